/* census.h - finding every object, and counting them by type.
 *
 * Three passes, in this order because each needs the types the one
 * before found:
 *
 *   1. static types: type objects in the libraries' data (word by word,
 *      an object whose ob_type is &PyType_Type and that reads as a type);
 *   2. the gc lists: every object the collector tracks, in each
 *      interpreter's generations (and the permanent one of gc.freeze()).
 *      Exact, and it meets every class, since classes are tracked;
 *   3. the scan: every 16-byte boundary of writable memory (8 bytes in
 *      static data) whose second word is a known type and whose first a
 *      plausible reference count, checked by kind (a str ends with NUL,
 *      an int's top digit is not zero...).  This finds the objects the
 *      collector does not track: strs, bytes, ints, floats, and the
 *      containers it has untracked (the collector itself untracks only
 *      tuples and dicts of atomic values).  A tracked object met by the scan
 * is skipped: the walk counted it.
 *
 * Freed objects are not counted: deallocation leaves the reference count
 * at 0, and pymalloc then writes its free-list link over it.
 */
#ifndef PYLEAKHUNT_CENSUS_CENSUS_H
#define PYLEAKHUNT_CENSUS_CENSUS_H

#include "scanner.h"

/* Runs the three passes, filling s->types (counts, bytes) and s->nodes.
   Returns 0, or -1 with s->error set (the runtime cannot be found, the
   layout does not match, out of memory). */
int cs_census_run(cs_scanner *s);

/* The interpreters, from _PyRuntime: calls `fn` with each
   PyInterpreterState address until it returns non-zero.  Returns the
   number visited. */
typedef int (*cs_interp_fn)(cs_scanner *s, uint64_t interp, void *ctx);
uint64_t cs_foreach_interpreter(cs_scanner *s, cs_interp_fn fn, void *ctx);

#endif
