// How walship sees the SQLite API: through the extension routines when built as a loadable
// module (the host's SQLite, whatever it is), directly when linked into an application.
#pragma once
#ifdef WALSHIP_STATIC
#include <sqlite3.h>
#else
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT3
#endif
