#ifndef SOMA_CHIREDIS_SHIM_H
#define SOMA_CHIREDIS_SHIM_H
/* Debian's libhiredis-dev (0.14.x): the synchronous API only (no RESP3, no redisConnectWithOptions). */
#include <hiredis/hiredis.h>
#endif
