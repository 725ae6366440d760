#!/usr/bin/env bash
# manage.py commands with walship loaded: migrate, createsuperuser, dumpdata; and the data they
# wrote is in the replica (restored with the walship command).
set -euo pipefail
source "$(dirname "$0")/../../examples/django/lib.sh"
build=$1
export WALSHIP_EXTENSION=$build/libwalship
RUN=$(mktemp -d /tmp/walship-manage-XXXX)
export WALSHIP_DB="$RUN/db.sqlite3" DJANGO_SUPERUSER_USERNAME=admin DJANGO_SUPERUSER_EMAIL=admin@example.com DJANGO_SUPERUSER_PASSWORD=pw-not-secret
unset WALSHIP_REPLICA_URL
trap 'stop_store "$RUN"; rm -rf "$RUN"' EXIT
start_store "$RUN"
cd "$EXAMPLE"
$PY manage.py migrate --noinput
$PY manage.py createsuperuser --noinput
$PY manage.py shell -c "from notes.models import Note; Note.objects.create(author='manage', body='from the shell')"
$PY manage.py dumpdata notes auth.user --indent 1 >"$RUN/dump.json"
grep -q '"username": "admin"' "$RUN/dump.json"
grep -q '"body": "from the shell"' "$RUN/dump.json"
"$build/walship" restore -o "$RUN/restored.db" "$WALSHIP_REPLICA_URL"
[ "$(sqlite3 "$RUN/restored.db" "select count(*) from auth_user where username='admin'")" = 1 ]
[ "$(sqlite3 "$RUN/restored.db" "select body from notes_note")" = "from the shell" ]
echo "manage.py migrate, createsuperuser, shell and dumpdata work with walship; the replica has their data"
