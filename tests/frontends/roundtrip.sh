#!/usr/bin/env bash
# The same round trip driven three ways: the sqlite3 shell with .load, /usr/bin/python3 with
# load_extension, and a C++ program linked statically. Each writes through walship to the local
# S3 server, then `walship restore` rebuilds the database and it must equal the source page by
# page (after a checkpoint) and pass integrity_check; then auto-restore brings back a deleted copy.
#   roundtrip.sh shell|python|cpp BUILD_DIR ENDPOINT_FILE
set -euo pipefail
mode=$1 build=$2 endpoint=$(cat "$3")
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
bucket="fe-$mode-$RANDOM$RANDOM"
curl -sf -X PUT "$endpoint/$bucket" -o /dev/null
url="s3://$bucket/db?endpoint=$endpoint"
db="$dir/app.db"
case $mode in
shell)
  sqlite3 <<SQL
.load $build/libwalship
.open file:$db?replica=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1],safe=":/"))' "$url")
create table kv(k integer primary key, v text);
insert into kv(v) select 'value ' || value from generate_series(1, 1000);
update kv set v = v || '!' where k % 3 = 0;
delete from kv where k % 10 = 0;
pragma walship_flush;
SQL
  ;;
python) /usr/bin/python3 "$(dirname "$0")/../../examples/python/example.py" "$build/libwalship" "$db" "$url" 1000 ;;
cpp) "$build/walship-example" "$db" "$url" 1000 ;;
esac
sqlite3 "$db" "pragma wal_checkpoint(TRUNCATE)" >/dev/null
"$build/walship" restore -o "$dir/restored.db" "$url"
cmp "$db" "$dir/restored.db"
[ "$(sqlite3 "$dir/restored.db" 'pragma integrity_check')" = ok ]
rows=$(sqlite3 "$db" 'select count(*) from kv')
# Auto-restore: delete the database and open it again through walship.
rm -f "$db" "$db-wal" "$db-shm"
got=$(sqlite3 <<SQL
.load $build/libwalship
.open file:$db?replica=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1],safe=":/"))' "$url")
select count(*) from kv;
SQL
)
[ "$got" = "$rows" ] || { echo "auto-restore gave $got rows, expected $rows" >&2; exit 1; }
echo "$mode: round trip ok ($rows rows)"
