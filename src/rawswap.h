/* rawswap.h - swap the RAW domain's allocator under running threads.
 *
 * Any thread may call PyMem_RawMalloc and friends, without the GIL, while
 * start() or stop() swaps the domain's allocator.  PyMem_SetAllocator
 * copies the whole struct with memcpy, which PGO builds (Debian's 3.11,
 * 3.14 and 3.15) compile as `rep movsl`: four bytes at a time.  A thread
 * that read a function pointer meanwhile got half of the old one and half
 * of the new, and jumped to nowhere (test_safety_start_stop.py,
 * ..._never_see_a_hook_half_installed).
 *
 * So the RAW domain's function pointers are written one aligned 8-byte
 * atomic store each, straight into CPython's struct, and its ctx is never
 * changed: the RAW hooks ignore their ctx and are installed with the one
 * they replace.  Whatever mix of old and new fields a thread reads is
 * then a valid allocator.
 */
#ifndef PYLEAKHUNT_RAWSWAP_H
#define PYLEAKHUNT_RAWSWAP_H

#include <Python.h>

/* Make `functions`' malloc, calloc, realloc and free the RAW domain's,
   keeping the domain's ctx.  Where CPython's struct cannot be found (a
   CPU other than x86-64 before 3.12, or code this file does not
   recognise), falls back to PyMem_SetAllocator. */
void lh_rawswap_install(const PyMemAllocatorEx *functions);

/* Copy `src` to `dst` field by field, each an atomic store: for a struct
   that hooks running on other threads read (the allocators a hook calls
   next). */
void lh_rawswap_copy(PyMemAllocatorEx *dst, const PyMemAllocatorEx *src);

/* Testing: whether lh_rawswap_install writes the domain's fields itself
   (1) or falls back to PyMem_SetAllocator (0). */
int lh_rawswap_in_place(void);

#endif /* PYLEAKHUNT_RAWSWAP_H */
