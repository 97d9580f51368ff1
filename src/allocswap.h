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
 * - MEM and OBJ share entry points told apart by ctx.  One read with a
 *   ctx that is not ours is OBJ's if it is the ctx OBJ's allocator had
 *   (the debug hooks', which differs per domain), else MEM's, whose
 *   allocator is OBJ's in every release build (pymalloc, malloc or
 *   mimalloc, none reading its ctx).
 * - The old functions given our ctx: the release allocators ignore it,
 *   and CPython's debug hooks (PYTHONMALLOC=debug, every debug build)
 *   find in it what they find in their own (lh_hook_ctx below).
 */
#ifndef PYLEAKHUNT_ALLOCSWAP_H
#define PYLEAKHUNT_ALLOCSWAP_H

#include <Python.h>

/* The ctx of our MEM and OBJ entry points.  It is laid out as CPython's
   debug hooks' ctx (debug_alloc_api_t: the domain's API id and the
   allocator they wrap), because a thread that reads their function and
   our ctx while start() or stop() swaps them calls them with ours: they
   must find the allocator they wrap in it, and tag the block with their
   own domain's id, which its free checks. */
typedef struct {
    char api_id;
    PyMemAllocatorEx alloc;
} lh_hook_ctx;

/* Fill `ours`, the ctx our hooks of `domain` are about to be installed
   with, given the allocator they replace: if that is CPython's debug
   hooks, `ours` gets what theirs holds.  Each field is one atomic store
   (a thread of another interpreter may be reading it). */
void lh_allocswap_prepare_ctx(PyMemAllocatorDomain domain,
                              const PyMemAllocatorEx *replaced,
                              lh_hook_ctx *ours);

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
