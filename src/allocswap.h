/* allocswap.h - swap CPython's allocators under running threads.
 *
 * start() and stop() change the allocators while other threads call
 * them: any thread calls the RAW domain without the GIL, and from 3.12 the
 * threads of an isolated subinterpreter call MEM and OBJ under a GIL of
 * their own.  PyMem_SetAllocator copies the whole struct, ctx and
 * functions, and PGO builds (Debian's 3.11, 3.14 and 3.15) compile that
 * copy as `rep movsl`, four bytes at a time.  A thread in between read
 * half of a function pointer and jumped to nowhere
 * (test_safety_start_stop.py, ..._never_see_a_hook_half_installed), or
 * our hook with the old ctx, and freed a pymalloc block with libc's free
 * (test_safety_subinterpreters.py, ..._isolated_subinterpreters_allocate).
 *
 * So each field is written with one aligned 8-byte atomic store, straight
 * into CPython's struct, and the hooks accept any ctx a torn read can
 * give them:
 * - RAW's ctx never changes: the RAW hooks ignore theirs and are
 *   installed with the one they replace;
 * - MEM and OBJ share entry points told apart by ctx; one read with the
 *   old ctx is taken for MEM, whose allocator is OBJ's in every release
 *   build (pymalloc, malloc or mimalloc, none reading its ctx); and the
 *   old functions given our ctx ignore it too.  Only the debug hooks
 *   (PYTHONMALLOC=debug) read their ctx: there a subinterpreter thread
 *   can still lose in the window of one start() or stop().
 */
#ifndef PYLEAKHUNT_ALLOCSWAP_H
#define PYLEAKHUNT_ALLOCSWAP_H

#include <Python.h>

/* Make `allocator` the allocator of `domain` (RAW keeps its ctx).  Where
   CPython's struct cannot be found (before 3.12: MEM and OBJ, whose
   callers the one GIL serializes, and RAW on a CPU other than x86-64 or
   code this file does not recognise), this is PyMem_SetAllocator. */
void lh_allocswap_install(PyMemAllocatorDomain domain,
                          const PyMemAllocatorEx *allocator);

/* Copy `src` to `dst` field by field, each an atomic store: for a struct
   that hooks running on other threads read (the allocators a hook calls
   next). */
void lh_allocswap_copy(PyMemAllocatorEx *dst, const PyMemAllocatorEx *src);

/* Testing: whether lh_allocswap_install writes `domain` itself (1) or
   calls PyMem_SetAllocator (0). */
int lh_allocswap_in_place(PyMemAllocatorDomain domain);

#endif /* PYLEAKHUNT_ALLOCSWAP_H */
