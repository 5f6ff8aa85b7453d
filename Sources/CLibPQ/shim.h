#ifndef SOMA_CLIBPQ_SHIM_H
#define SOMA_CLIBPQ_SHIM_H
/* Debian's libpq-dev (PostgreSQL 15 client library): the blocking libpq API.
 * PG_DIAG_SQLSTATE and friends are macros ('C' = 67); Swift uses the character codes directly. */
#include <postgresql/libpq-fe.h>
#endif
