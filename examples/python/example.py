#!/usr/bin/python3
"""Replicating a database from Python with walship (Debian's /usr/bin/python3, whose sqlite3
module can load extensions).

    /usr/bin/python3 example.py /path/to/libwalship DB_PATH REPLICA_URL [ROWS]

Loading the extension once makes "walship" the default VFS for every connection opened after it.
"""
import sqlite3
import sys
from urllib.parse import quote

lib, path, replica = sys.argv[1], sys.argv[2], sys.argv[3]
rows = int(sys.argv[4]) if len(sys.argv) > 4 else 1000

loader = sqlite3.connect(":memory:")
loader.enable_load_extension(True)
loader.load_extension(lib)
loader.close()

db = sqlite3.connect(f"file:{path}?replica={quote(replica, safe=':/')}", uri=True)
db.execute("create table if not exists kv(k integer primary key, v text)")
with db:
    db.executemany("insert into kv(v) values(?)", ((f"value {i}",) for i in range(rows)))
print("rows:", db.execute("select count(*) from kv").fetchone()[0])
print("flush:", db.execute("pragma walship_flush").fetchone()[0])
db.close()
