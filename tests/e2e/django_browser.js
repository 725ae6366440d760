// Drives Debian's Chromium (playwright-core, no downloaded browser): load the guestbook, add a
// note through the form, check it is listed, save a screenshot.
const { chromium } = require('playwright-core');

(async () => {
  const [url, shot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
    await page.goto(url);
    const body = `Signed from headless Chromium at ${new Date().toISOString()}`;
    await page.fill('#id_author', 'Chromium');
    await page.fill('#id_body', body);
    await Promise.all([page.waitForNavigation(), page.click('#submit')]);
    const text = await page.textContent('#notes');
    if (!text.includes(body)) throw new Error('the new note is not listed');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`note added through the form and listed; screenshot: ${shot}`);
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
