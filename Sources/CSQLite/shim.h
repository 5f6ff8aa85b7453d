#ifndef SOMA_CSQLITE_SHIM_H
#define SOMA_CSQLITE_SHIM_H
#include <sqlite3.h>

/// SQLITE_TRANSIENT is a cast macro Swift cannot import: binding with it makes SQLite copy the bytes.
static inline sqlite3_destructor_type soma_sqlite_transient(void) { return SQLITE_TRANSIENT; }
#endif
