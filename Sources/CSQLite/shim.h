#ifndef OFFSITE_CSQLITE_SHIM_H
#define OFFSITE_CSQLITE_SHIM_H
#include <sqlite3.h>

/// Wraps the SQLITE_TRANSIENT destructor macro, which Swift cannot import: SQLite copies the value.
static inline sqlite3_destructor_type offsite_sqlite_transient(void) { return SQLITE_TRANSIENT; }

/// Wraps variadic sqlite3_db_config for the (int, int*) options such as SQLITE_DBCONFIG_DEFENSIVE.
static inline int offsite_sqlite_db_config_int(sqlite3 *db, int op, int value, int *out) {
    return sqlite3_db_config(db, op, value, out);
}

/// Wraps variadic sqlite3_file_control for the int-argument opcodes such as SQLITE_FCNTL_PERSIST_WAL.
static inline int offsite_sqlite_file_control_int(sqlite3 *db, const char *schema, int op, int *value) {
    return sqlite3_file_control(db, schema, op, value);
}
#endif
