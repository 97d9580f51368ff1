/* debugoffsets.h - reading the target's _Py_DebugOffsets (3.13+).
 *
 * CPython 3.13+ starts _PyRuntime with a table of the offsets an
 * out-of-process reader needs: the cookie "xdebugpy", PY_VERSION_HEX,
 * whether the build is free-threaded, then offsets of the runtime,
 * interpreter, thread, frame, code and object fields.  Offsets have moved
 * between patch releases; the target's own table is the truth, so the
 * census reads it and uses the row of layout.c only for what the table
 * does not give.
 */
#ifndef PYLEAKHUNT_CENSUS_DEBUGOFFSETS_H
#define PYLEAKHUNT_CENSUS_DEBUGOFFSETS_H

#include "scanner.h"

/* Checks the table at s->runtime (cookie, version against
   s->layout.minor, default build) and copies the offsets it gives into
   s->layout; fills s->target.  Does nothing before 3.13.  Returns 0, or
   -1 with s->error set to one sentence. */
int cs_debug_offsets_read(cs_scanner *s);

#endif
