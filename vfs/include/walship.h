/*
** walship: replicate SQLite databases to S3-compatible storage from inside the application.
**
** Loadable extension:   .load ./libwalship      (entry point sqlite3_walship_init)
** Linked statically:    call walship_register(1) once, before opening databases.
**
** Both register the VFS "walship" (a shim over the default VFS) and make it the process default.
** A database replicates when it has a replica location: URI parameter replica=<url>, or the
** environment variable WALSHIP_REPLICA_URL (when WALSHIP_DB is unset or names that database).
** See README.md and docs/DESIGN.md.
*/
#ifndef WALSHIP_H
#define WALSHIP_H

#ifdef __cplusplus
extern "C" {
#endif

/* Registers the "walship" VFS over the current default VFS. With make_default non-zero it becomes
** the default VFS. Idempotent. Returns SQLITE_OK or an SQLite error code. */
int walship_register(int make_default);

/* The name of the VFS ("walship"). */
const char* walship_vfs_name(void);

#ifdef __cplusplus
}
#endif

#endif /* WALSHIP_H */
