"""Django's SQLite backend with walship loaded.

Loading the extension once registers the "walship" VFS as the process default, so every
connection Django opens afterwards replicates (when WALSHIP_REPLICA_URL is set and WALSHIP_DB
names the database). Needs a Python whose sqlite3 module can load extensions (Debian's
/usr/bin/python3 can). WALSHIP_EXTENSION is the path to libwalship (without or with .so).
"""
import os
import sqlite3
import threading
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.sqlite3 import base

_lock = threading.Lock()
_loaded = False


def load_walship():
    global _loaded
    with _lock:
        if _loaded:
            return
        default = Path(__file__).resolve().parents[4] / "build-release" / "libwalship"
        path = os.environ.get("WALSHIP_EXTENSION", str(default))
        loader = sqlite3.connect(":memory:")
        try:
            loader.enable_load_extension(True)
            loader.load_extension(path)
        except (AttributeError, sqlite3.OperationalError) as e:
            raise ImproperlyConfigured(f"cannot load the walship extension from {path}: {e}") from e
        finally:
            loader.close()
        _loaded = True


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        load_walship()
        return super().get_new_connection(conn_params)
