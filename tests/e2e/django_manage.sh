#!/usr/bin/env bash
# manage.py commands with walship loaded (examples/django, replicating to a local S3 server):
# migrate, createsuperuser --noinput (DJANGO_SUPERUSER_*), shell, dumpdata; the replica has their
# data (restored with the walship command and read with sqlite3); and after the database files
# are deleted, the next manage.py command gets the database back from the replica on its own.
#   django_manage.sh BUILD_DIR
set -euo pipefail
source "$(dirname "$0")/../../examples/django/lib.sh"
build=$1
export WALSHIP_EXTENSION=$build/libwalship
RUN=$(mktemp -d /tmp/walship-manage-XXXX)
export WALSHIP_DB="$RUN/db.sqlite3" WALSHIP_LOG_LEVEL=info
export DJANGO_SUPERUSER_USERNAME=admin DJANGO_SUPERUSER_EMAIL=admin@example.com DJANGO_SUPERUSER_PASSWORD=pw-not-secret
unset WALSHIP_REPLICA_URL DB_PATH REPLICA_URL
export ENV_FILE=/nonexistent
trap 'stop_store "$RUN"; rm -rf "$RUN"' EXIT
start_store "$RUN"
[ "$STORE_KIND" = moto ] || { echo "moto is needed for this test (python3 -m moto.server)"; exit 1; }
cd "$EXAMPLE"
"$PY" manage.py migrate --noinput 2>"$RUN/log" | tail -3
grep -q "walship INFO replicating $WALSHIP_DB" "$RUN/log" || { cat "$RUN/log"; echo "walship did not replicate during migrate"; exit 1; }
"$PY" manage.py createsuperuser --noinput 2>>"$RUN/log"
"$PY" manage.py shell -c "from notes.models import Note; Note.objects.create(author='manage', body='from the shell')" 2>>"$RUN/log"
"$PY" manage.py dumpdata notes auth.user --indent 1 >"$RUN/dump.json" 2>>"$RUN/log"
grep -q '"username": "admin"' "$RUN/dump.json"
grep -q '"body": "from the shell"' "$RUN/dump.json"
echo "migrate, createsuperuser, shell, dumpdata: ok"

# Every command closed its connection: everything is in the replica.
"$build/walship" restore -o "$RUN/restored.db" "$WALSHIP_REPLICA_URL"
[ "$(sqlite3 "$RUN/restored.db" "select count(*) from auth_user where username='admin' and is_superuser=1")" = 1 ]
[ "$(sqlite3 "$RUN/restored.db" "select body from notes_note")" = "from the shell" ]
[ "$(sqlite3 "$RUN/restored.db" "pragma integrity_check")" = ok ]
echo "walship restore: the replica has the superuser and the note"

# The disk is lost: the next manage.py command restores the database before it opens.
delete_database
"$PY" manage.py dumpdata auth.user --indent 1 >"$RUN/dump2.json" 2>"$RUN/log2"
grep -q "walship INFO restored $WALSHIP_DB" "$RUN/log2" || { cat "$RUN/log2"; echo "no restore logged"; exit 1; }
grep -q '"username": "admin"' "$RUN/dump2.json"
"$PY" manage.py migrate --noinput 2>>"$RUN/log2" | grep -q "No migrations to apply"
echo "after deleting the database files, dumpdata restored it from the replica; migrate has nothing to apply"
