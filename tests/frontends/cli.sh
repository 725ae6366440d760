#!/usr/bin/env bash
# The walship command's contract: clear one-line errors and exit codes for bad input.
#   cli.sh BUILD_DIR ENDPOINT_FILE
set -uo pipefail
build=$1 endpoint=$(cat "$2")
src=$(cd "$(dirname "$0")/../.." && pwd)
# Under AddressSanitizer the module cannot be loaded into other programs (python3, sqlite3):
# those checks run in the normal build only.
asan=0; grep -q "^WALSHIP_SANITIZE:BOOL=ON" "$build/CMakeCache.txt" 2>/dev/null && asan=1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=cli-test-secret AWS_REGION=us-east-1
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
fail=0
expect() {  # expect CODE PATTERN -- command...
  local code=$1 pattern=$2; shift 3
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" != "$code" ] || ! grep -qE "$pattern" <<<"$out" || grep -q cli-test-secret <<<"$out"; then
    echo "FAIL: $* -> exit $rc, output: $out (wanted exit $code and /$pattern/)"; fail=1
  else
    echo "ok: $* -> exit $rc: $(head -1 <<<"$out")"
  fi
}
bucket="cli-$RANDOM$RANDOM"
curl -sf -X PUT "$endpoint/$bucket" -o /dev/null
url="s3://$bucket/db?endpoint=$endpoint"
expect 2 "usage" -- "$build/walship"
expect 2 "unknown command" -- "$build/walship" frobnicate
expect 2 "db is not an option of verify" -- "$build/walship" verify --db "$dir/a.db" "$url"
expect 2 "sample is not an option of status" -- "$build/walship" status --sample 3 "$url"
expect 2 "json is not an option of snapshot" -- "$build/walship" snapshot --json --db "$dir/a.db" "$url"
expect 1 "unknown scheme|scheme" -- "$build/walship" restore -o "$dir/a.db" "ftp://x/y"
expect 1 "bucket" -- "$build/walship" restore -o "$dir/a.db" "s3:///nobucket"
expect 2 "no output path" -- env -u WALSHIP_DB "$build/walship" restore "$url"
expect 3 "no generations" -- "$build/walship" restore -o "$dir/a.db" "$url"
expect 0 "skipping" -- "$build/walship" restore --if-replica-exists -o "$dir/a.db" "$url"
expect 3 "no generations" -- "$build/walship" verify "$url"
expect 2 "give one" -- "$build/walship" restore -o "$dir/a.db" --txid 1 --timestamp 2026-01-02T15:04:05Z "$url"
test ! -e "$dir/a.db" || { echo "FAIL: a database file appeared"; fail=1; }
# A bucket that does not exist is an error, not an empty replica, also under --if-replica-exists.
nobucket="s3://no-such-$bucket/db?endpoint=$endpoint"
expect 1 "NoSuchBucket" -- "$build/walship" restore -o "$dir/a.db" "$nobucket"
expect 1 "NoSuchBucket" -- "$build/walship" restore --if-replica-exists -o "$dir/a.db" "$nobucket"
expect 1 "NoSuchBucket" -- "$build/walship" generations "$nobucket"
test ! -e "$dir/a.db" || { echo "FAIL: a database file appeared"; fail=1; }
expect 1 "network|connect|refused|timed out" -- env WALSHIP_S3_ATTEMPTS=1 "$build/walship" generations "s3://bkt/p?endpoint=http://127.0.0.1:9"
# A failed request names the store; a bad setting from the environment names its variable.
expect 1 "s3://no-such-$bucket/db\?endpoint=.*NoSuchBucket" -- "$build/walship" status "$nobucket"
expect 1 "invalid region .*from AWS_REGION" -- env AWS_REGION="us east" "$build/walship" generations "$url"
expect 1 "WALSHIP_S3_ATTEMPTS must be a positive whole number, not 'abc'" -- env WALSHIP_S3_ATTEMPTS=abc "$build/walship" generations "$url"
expect 1 "WALSHIP_S3_TIMEOUT_MS must be a positive whole number" -- env WALSHIP_S3_TIMEOUT_MS=0 "$build/walship" generations "$url"
expect 1 "credentials" -- env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "$build/walship" generations "s3://bkt/p"
expect 2 "invalid timestamp" -- "$build/walship" restore -o "$dir/a.db" --timestamp yesterday "$url"
touch "$dir/exists.db"; echo x > "$dir/exists.db"
expect 1 "already exists" -- "$build/walship" restore -o "$dir/exists.db" "$url"
expect 0 "already exists, skipping" -- "$build/walship" restore --if-db-not-exists -o "$dir/exists.db" "$url"
expect 0 "generation" -- "$build/walship" generations "$url"
expect 0 "no data" -- "$build/walship" status "$url"
# A destination without room for the database (a file size limit here; a full disk answers the
# same way with ENOSPC): a clear error naming the file, and nothing left behind. Once the data is
# in a snapshot, the restore is refused before its download, naming the size.
url2="s3://$bucket/big?endpoint=$endpoint"
"$build/walship-example" "$dir/big.db" "$url2" 5000 >/dev/null 2>&1 || { echo "FAIL: walship-example"; fail=1; }
mkdir "$dir/small"
limited() { bash -c 'ulimit -f 32 && exec "$0" restore -o "$1" "$2"' "$build/walship" "$dir/small/r.db" "$url2"; }
expect 1 "writing .*small/r.db.* failed: File too large" -- limited
test -z "$(ls -A "$dir/small")" || { echo "FAIL: a failed restore left $(ls -A "$dir/small")"; fail=1; }
expect 0 "snapshot" -- "$build/walship" snapshot --db "$dir/big.db" "$url2"
expect 0 "local: .*big.db: shipped through txid [0-9]+ \(the replica's latest\)" -- "$build/walship" status --db "$dir/big.db" "$url2"
expect 0 '"in_step":true' -- "$build/walship" status --json --db "$dir/big.db" "$url2"
expect 1 "walship status: --db .*no-such.db: No such file or directory" -- "$build/walship" status --db "$dir/no-such.db" "$url2"
expect 1 "cannot allocate [0-9]+ bytes .*small/r.db.*: File too large" -- limited
test -z "$(ls -A "$dir/small")" || { echo "FAIL: a failed restore left $(ls -A "$dir/small")"; fail=1; }
expect 0 "restored" -- "$build/walship" restore -o "$dir/small/r.db" "$url2"
[ "$(sqlite3 "$dir/small/r.db" 'select count(*) from kv')" = 5000 ] || { echo "FAIL: the restore after it is not whole"; fail=1; }
# Arguments are checked, not guessed: negative or non-numeric numbers, impossible times, extra words.
expect 2 "invalid txid" -- "$build/walship" restore -o "$dir/x.db" --txid -1 "$url2"
expect 2 "invalid txid" -- "$build/walship" restore -o "$dir/x.db" --txid 99999999999999999999999 "$url2"
expect 2 "invalid --sample" -- "$build/walship" verify --sample abc "$url2"
expect 2 "unexpected argument" -- "$build/walship" generations "$url2" "$url"
expect 2 "unexpected argument" -- "$build/walship" restore -o "$dir/x.db" "$url2" "$url"
for t in 2026-02-30T00:00:00Z 2026-01-02T15:04:05+5:0 2026-01-02T15:04:05+99:99 2026-01-02T15:04:05.Z 2026-01-02T24:00:00Z 2026-01-02T15:04:05; do
  expect 2 "invalid timestamp" -- "$build/walship" restore -o "$dir/x.db" --timestamp "$t" "$url2"
done
expect 0 "restored" -- "$build/walship" restore -o "$dir/x.db" --timestamp 2099-01-02t15:04:05.5+01:00 "$url2"
# A directory is not a database path (also not "a database that exists" for --if-db-not-exists);
# a symbolic link is followed, as SQLite follows it.
mkdir "$dir/adir"
expect 1 "adir is a directory" -- "$build/walship" restore -o "$dir/adir" "$url2"
expect 1 "adir is a directory" -- "$build/walship" restore --if-db-not-exists -o "$dir/adir" "$url2"
ln -s "$dir/target.db" "$dir/link.db"
expect 0 "restored .*target.db" -- "$build/walship" restore -o "$dir/link.db" "$url2"
{ test -L "$dir/link.db" && [ "$(sqlite3 "$dir/link.db" 'select count(*) from kv')" = 5000 ]; } || { echo "FAIL: restore through a symbolic link"; fail=1; }
expect 0 "usage: walship restore" -- "$build/walship" restore --help
# A newer generation holding only a snapshot's first part (a first snapshot being uploaded, or
# abandoned): status reports what a restore would give, and the unfinished generation apart.
latest=$("$build/walship" status --json "$url2" | sed -n 's/.*"generation":"\([0-9a-f]*\)".*/\1/p')
g=$(printf "%016x" $(( $(date +%s%3N) << 16 ))); ts=$(printf "%016x" $(date +%s%3N))
curl -sf -X PUT --data-binary "part" "$endpoint/$bucket/big/generations/$g/snapshots/0000000000000000-$ts-0000000000000001.part" -o /dev/null
expect 0 "\"generation\":\"$latest\".*\"unfinished_generation\":\"$g\"" -- "$build/walship" status --json "$url2"
expect 0 "unfinished: +generation $g has no whole snapshot" -- "$build/walship" status "$url2"
# Another tool's replica under the prefix (Litestream's layout) is not "no data": restoring
# nothing over it, even under --if-replica-exists, would start the application empty.
curl -sf -X PUT --data-binary "lz4" "$endpoint/$bucket/ls/generations/0123456789abcdef/snapshots/00000000.snapshot.lz4" -o /dev/null
url3="s3://$bucket/ls?endpoint=$endpoint"
expect 1 "objects walship does not write .*snapshot.lz4.*Litestream" -- "$build/walship" restore -o "$dir/ls.db" "$url3"
expect 1 "objects walship does not write" -- "$build/walship" restore --if-replica-exists -o "$dir/ls.db" "$url3"
expect 0 "no walship data, but objects walship does not write" -- "$build/walship" status "$url3"
test ! -e "$dir/ls.db" || { echo "FAIL: a database file appeared"; fail=1; }
# A restore to the path of a database that is gone takes the side files it left with it: status
# --db compared the replica with them and called an older restored state in step.
url4="s3://$bucket/stale?endpoint=$endpoint"
"$build/walship-example" "$dir/stale.db" "$url4" 20 >/dev/null 2>&1 || { echo "FAIL: walship-example"; fail=1; }
rm -f "$dir/stale.db" "$dir/stale.db-wal" "$dir/stale.db-shm"
expect 0 "restored .*stale.db" -- "$build/walship" restore --txid 0 -o "$dir/stale.db" "$url4"
expect 0 "stale.db has no walship side file" -- "$build/walship" status --db "$dir/stale.db" "$url4"
# walship snapshot of a file that is not a database: said at once, and no side file is left.
head -c 8192 /dev/urandom > "$dir/garbage.db"; : > "$dir/empty.db"
expect 1 "garbage.db is not an SQLite database" -- "$build/walship" snapshot --db "$dir/garbage.db" "$url2"
expect 1 "empty.db is empty" -- "$build/walship" snapshot --db "$dir/empty.db" "$url2"
test ! -e "$dir/garbage.db-walship" || { echo "FAIL: walship snapshot left a side file beside a file that is not a database"; fail=1; }
expect 0 "usage: walship restore" -- "$build/walship" status -h "$url2"
# A point the replica does not hold is a failure (1), not "no data" (3).
expect 1 "not in generation" -- "$build/walship" restore -o "$dir/y.db" --txid 99999999 "$url2"
expect 1 "holds nothing at or before 2001-01-01T00:00:00.000Z .*the earliest point it holds is 20[0-9-]+T[0-9:.]+Z \(txid [0-9]+ of generation [0-9a-f]+\)" -- "$build/walship" restore -o "$dir/y.db" --timestamp 2001-01-01T00:00:00Z "$url2"
mkfifo "$dir/fifo"
# A directory location that does not exist reads as no data (the first upload creates it), and says so.
expect 3 "no generations with a snapshot in file://$dir/typo/r \(the directory $dir/typo/r does not exist\)" -- "$build/walship" restore -o "$dir/y.db" "file://$dir/typo/r"
expect 0 "the directory $dir/typo/r does not exist\), skipping" -- "$build/walship" restore --if-replica-exists -o "$dir/y.db" "file://$dir/typo/r"
expect 1 "fifo is not a regular file" -- "$build/walship" restore -o "$dir/fifo" "$url2"
# Secrets never reach a message, also percent-encoded in an endpoint or in an unknown parameter.
expect 1 "unknown query parameter" -- "$build/walship" generations "s3://bkt/p?endpoint=$endpoint&secret_access_key=cli-test-secret"
expect 1 "user info" -- "$build/walship" generations "s3://bkt/p?endpoint=http%3A%2F%2Fu%3Acli-test-secret%40127.0.0.1%3A9"
expect 2 "given twice" -- "$build/walship" restore -o "$dir/x.db" --txid 5 --txid 6 "$url2"
expect 1 "fragment" -- "$build/walship" generations "s3://bkt/p?endpoint=$endpoint#cli-test-secret"
expect 1 "region" -- "$build/walship" generations "s3://bkt/p?endpoint=$endpoint&region=cli-test-secret%zz"
expect 1 "endpoint" -- "$build/walship" generations "s3://bkt/p?endpoint=http://127.0.0.1:9;cli-test-secret"
# verify leaves nothing behind (its copies are opened immutable: no -shm or -wal).
mkdir "$dir/vt"
expect 0 "verify: ok" -- env TMPDIR="$dir/vt" "$build/walship" verify --sample 3 "$url2"
test -z "$(ls -A "$dir/vt")" || { echo "FAIL: verify left $(ls -AR "$dir/vt")"; fail=1; }
# A killed restore's temporary file is removed by the next restore to the same place.
touch "$dir/small/z.db.walship-restore-99999999"
expect 0 "restored" -- "$build/walship" restore -o "$dir/small/z.db" "$url2"
test ! -e "$dir/small/z.db.walship-restore-99999999" || { echo "FAIL: a dead restore's temp file was left"; fail=1; }
# snapshot: a mistyped path is an error (no new database appears), and a path with ? and # works.
expect 1 "no database at" -- "$build/walship" snapshot --db "$dir/nope.db" "$url2"
test ! -e "$dir/nope.db" || { echo "FAIL: snapshot created a database"; fail=1; }
cp "$dir/small/z.db" "$dir/q?#.db"
expect 0 "snapshot: ok" -- "$build/walship" snapshot --db "$dir/q?#.db" "s3://$bucket/odd?endpoint=$endpoint"
# An empty database that a process has open is not replaced: that process would go on writing its
# own file, and its WAL would land beside the restored one (a walship application, a plain SQLite
# connection in a transaction). Once it is closed, the restore goes ahead.
: > "$dir/open.db"
if [ "$asan" = 0 ]; then
/usr/bin/python3 - "$build/libwalship" "$dir/open.db" "s3://$bucket/open?endpoint=$endpoint" "$dir/open.ready" <<'PY' &
import sqlite3, sys, time
c = sqlite3.connect(":memory:"); c.enable_load_extension(True); c.load_extension(sys.argv[1])
d = sqlite3.connect(f"file:{sys.argv[2]}?replica={sys.argv[3]}", uri=True, isolation_level=None)
d.execute("select 1").fetchall(); open(sys.argv[4], "w").close()
time.sleep(60)
PY
holder=$!
for _ in $(seq 100); do [ -e "$dir/open.ready" ] && break; sleep 0.1; done
expect 1 "open.db is open in another process .*open.db-walship.*stop the application first" -- "$build/walship" restore -o "$dir/open.db" "$url2"
expect 1 "open.db is open in another process" -- "$build/walship" restore --if-db-not-exists -o "$dir/open.db" "$url2"
kill $holder; wait $holder 2>/dev/null
fi
rm -f "$dir/open.ready"
/usr/bin/python3 -c '
import sqlite3, sys, time
d = sqlite3.connect(sys.argv[1], isolation_level=None); d.execute("begin"); d.execute("select * from sqlite_master").fetchall()
open(sys.argv[2], "w").close(); time.sleep(60)' "$dir/open.db" "$dir/open.ready" &
holder=$!
for _ in $(seq 100); do [ -e "$dir/open.ready" ] && break; sleep 0.1; done
expect 1 "open.db is open in another process \(process $holder holds a lock on .*open.db\)" -- "$build/walship" restore -o "$dir/open.db" "$url2"
kill $holder; wait $holder 2>/dev/null
test ! -s "$dir/open.db" || { echo "FAIL: the open database was replaced"; fail=1; }
expect 0 "restored .*open.db" -- "$build/walship" restore -o "$dir/open.db" "$url2"
# An interrupted restore or verify (Ctrl-C, SIGTERM) removes its temporary files (as large as the
# database) and exits by the signal. The fault proxy holds each request 3 s.
python3 "$src/tests/support/faultproxy.py" --upstream "$endpoint" --port-file "$dir/proxy.port" >/dev/null 2>&1 &
proxy=$!
for _ in $(seq 100); do [ -s "$dir/proxy.port" ] && break; sleep 0.1; done
purl="s3://$bucket/big?endpoint=http://127.0.0.1:$(cat "$dir/proxy.port")"
mkdir "$dir/int" "$dir/int/vt"
for sig in INT TERM; do
  curl -sf -X POST "http://127.0.0.1:$(cat "$dir/proxy.port")/__fault?mode=delay&count=50" -o /dev/null
  "$build/walship" restore -o "$dir/int/r.db" "$purl" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 150); do compgen -G "$dir/int/r.db.walship-restore-*" >/dev/null && break; sleep 0.1; done
  compgen -G "$dir/int/r.db.walship-restore-*" >/dev/null || { echo "FAIL: no temporary file seen (SIG$sig)"; fail=1; }
  kill -$sig $pid; wait $pid; rc=$?
  want=$(( 128 + $(kill -l $sig) ))
  [ "$rc" = "$want" ] || { echo "FAIL: restore interrupted by SIG$sig exited $rc, wanted $want"; fail=1; }
  curl -sf -X POST "http://127.0.0.1:$(cat "$dir/proxy.port")/__fault?mode=delay&count=50" -o /dev/null
  env TMPDIR="$dir/int/vt" "$build/walship" verify "$purl" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 150); do compgen -G "$dir/int/vt/*/verify.db.walship-restore-*" >/dev/null && break; sleep 0.1; done
  kill -$sig $pid; wait $pid
  curl -sf -X POST "http://127.0.0.1:$(cat "$dir/proxy.port")/__reset" -o /dev/null
done
kill $proxy; wait $proxy 2>/dev/null
test -z "$(ls -AR "$dir/int" | grep -v '^$' | grep -v ':$' | grep -vx vt)" || { echo "FAIL: interrupted commands left $(ls -AR "$dir/int")"; fail=1; }
test -z "$(ls -A "$dir/int/vt")" || { echo "FAIL: an interrupted verify left $(ls -AR "$dir/int/vt")"; fail=1; }
echo "ok: interrupted restore and verify leave no files"
# A misspelt WALSHIP_ variable is warned of, also when no database replicates (a misspelt
# WALSHIP_REPLICA_URL leaves every database unreplicated); another program's variables are not.
if [ "$asan" = 0 ]; then
: > "$dir/env.db"
out=$(env WALSHIP_REPLICA_URI="$url" WALSHIP_DURABILTY=remote WALSHIP_SOMETHING_ELSE=1 sqlite3 :memory: ".load $build/libwalship" ".open $dir/env.db" "select 1" 2>&1)
for v in "WALSHIP_REPLICA_URI (did you mean WALSHIP_REPLICA_URL?)" "WALSHIP_DURABILTY (did you mean WALSHIP_DURABILITY?)"; do
  grep -qF "unknown environment variable $v" <<<"$out" || { echo "FAIL: no warning for $v: $out"; fail=1; }
done
! grep -q SOMETHING_ELSE <<<"$out" || { echo "FAIL: warned of another program's variable: $out"; fail=1; }
echo "ok: misspelt environment variables are warned of"
fi
# restore=off over an empty database while the replica has data: the new generation becomes the
# replica's latest state, which the log says (it said only "no generation to continue").
if [ "$asan" = 0 ]; then
url5="s3://$bucket/off?endpoint=$endpoint"
"$build/walship-example" "$dir/off-src.db" "$url5" 10 >/dev/null 2>&1 || { echo "FAIL: walship-example"; fail=1; }
out=$(sqlite3 :memory: ".load $build/libwalship" ".open file:$dir/off.db?replica=$url5&restore=off" "create table z(x)" "pragma walship_flush" 2>&1)
grep -qE "WARN restore=off: .*off.db was opened empty, and .* holds generation [0-9a-f]+ through txid [0-9]+: the new generation" <<<"$out" || { echo "FAIL: no restore=off warning: $out"; fail=1; }
grep -qE "started \(generation [0-9a-f]+ \(through txid [0-9]+\) does not continue from this database\)" <<<"$out" || { echo "FAIL: the new generation's reason: $out"; fail=1; }
echo "ok: restore=off over an empty database is warned of"
fi
# A database opened before walship was loaded (sqlite3 app.db, then .load) is not replicated by
# that connection: said at the load. A replica= database opened with another VFS fails to open.
if [ "$asan" = 0 ]; then
out=$(env WALSHIP_REPLICA_URL="s3://$bucket/before?endpoint=$endpoint" sqlite3 "$dir/before.db" ".load $build/libwalship" "select 1" 2>&1)
grep -qF "WARN $dir/before.db was opened before walship was loaded, so this connection does not replicate it" <<<"$out" || { echo "FAIL: no warning for a database opened before the load: $out"; fail=1; }
out=$(sqlite3 "$dir/plain-before.db" ".load $build/libwalship" "select 1" 2>&1)
! grep -q "opened before" <<<"$out" || { echo "FAIL: warned of a database with no replica location: $out"; fail=1; }
out=$(sqlite3 :memory: ".load $build/libwalship" ".open file:$dir/unixvfs.db?vfs=unix&replica=s3://$bucket/unixvfs" "select 1" 2>&1)
grep -qF "has replica= but is opened with the VFS 'unix', which does not replicate" <<<"$out" || { echo "FAIL: vfs=unix with replica= opened: $out"; fail=1; }
echo "ok: a database that would not replicate on its connection is said or refused"
fi
# verify reports a damaged object even when the restore goes around it (older snapshot + segments).
python3 - "$endpoint" "$bucket" <<'PY'  # (moto's Python has boto3; moto wants signed object requests)
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="test", aws_secret_access_key="x", region_name="us-east-1")
key = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=sys.argv[2], Prefix="big/generations/")["Contents"] if o["Key"].endswith(".snap"))[-1]
body = bytearray(s3.get_object(Bucket=sys.argv[2], Key=key)["Body"].read())
body[len(body) // 2] ^= 0x40
s3.put_object(Bucket=sys.argv[2], Key=key, Body=bytes(body))
PY
expect 0 "restored" -- "$build/walship" restore -o "$dir/around.db" "$url2"
expect 1 "damaged object" -- "$build/walship" verify "$url2"
# verify reads every object of the generation, not only those a restore reads: a damaged segment
# older than the latest snapshot, and a lost one (a gap in the txids), are reported.
url6="s3://$bucket/old?endpoint=$endpoint"
"$build/walship-example" "$dir/old.db" "$url6" 300 >/dev/null 2>&1 || { echo "FAIL: walship-example"; fail=1; }
expect 0 "snapshot" -- "$build/walship" snapshot --db "$dir/old.db" "$url6"
"$build/walship-example" "$dir/old.db" "$url6" 300 >/dev/null 2>&1 || { echo "FAIL: walship-example"; fail=1; }
expect 0 "objects .* read whole, checksums verified; txids [0-9]+-[0-9]+ restorable" -- "$build/walship" verify "$url6"
oldseg() {  # oldseg flip|delete: the generation's first segment
python3 - "$endpoint" "$bucket" "$1" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="test", aws_secret_access_key="x", region_name="us-east-1")
key = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=sys.argv[2], Prefix="old/generations/")["Contents"] if o["Key"].endswith(".seg"))[0]
if sys.argv[3] == "delete":
    s3.delete_object(Bucket=sys.argv[2], Key=key)
else:
    body = bytearray(s3.get_object(Bucket=sys.argv[2], Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x40
    s3.put_object(Bucket=sys.argv[2], Key=key, Body=bytes(body))
PY
}
oldseg flip
expect 0 "restored" -- "$build/walship" restore -o "$dir/old-r.db" "$url6"
expect 1 "damaged object .*segments/.*checksum mismatch" -- "$build/walship" verify "$url6"
oldseg delete
expect 1 "no object holds txids [0-9]+-[0-9]+ of generation" -- "$build/walship" verify "$url6"
exit $fail
