// Drives Debian's Chromium through playwright-core (no downloaded browser), with a fresh profile:
// load the guestbook through Caddy, add a note through the form, check that it is listed and that
// the count went up, open the admin's login page, save a screenshot of the guestbook.
//   node django_browser.js URL SCREENSHOT PROFILE_DIR
const { chromium } = require('playwright-core');

(async () => {
  const [url, shot, profile] = process.argv.slice(2);
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 900, height: 720 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = context.pages()[0] || await context.newPage();
    const countOf = async () => parseInt(await page.textContent('#count'), 10);
    await page.goto(url);
    const before = await countOf();
    const body = `Signed from headless Chromium at ${new Date().toISOString()}`;
    await page.fill('#id_author', 'Chromium');
    await page.fill('#id_body', body);
    await Promise.all([page.waitForNavigation(), page.click('#submit')]);
    const text = await page.textContent('#notes');
    if (!text.includes(body)) throw new Error('the new note is not listed');
    const after = await countOf();
    if (after !== before + 1) throw new Error(`count went from ${before} to ${after}`);
    await page.screenshot({ path: shot, fullPage: true });
    const admin = await context.newPage();
    await admin.goto(new URL('/admin/', url).toString());
    if (!(await admin.title()).includes('Django')) throw new Error(`admin page title: ${await admin.title()}`);
    console.log(`note added through the form (${before} -> ${after} notes) and listed; admin login page loads; screenshot: ${shot}`);
  } finally {
    await context.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
