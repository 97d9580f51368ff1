/* pyleakhunt.h - C API for other extensions: report foreign allocations.
 *
 * An extension that manages memory outside the Python allocators (a GPU
 * buffer, an mmap'd arena, a C library's own heap) can show those blocks
 * in pyleakhunt's snapshots, each in a domain number of its choosing:
 *
 *     #include "pyleakhunt.h"
 *
 *     const PyLeakHunt_CAPI *lh = PyLeakHunt_Import();  // NULL: not there
 *     if (lh != NULL) {
 *         lh->track(MY_DOMAIN, (uintptr_t)ptr, size);
 *         ...
 *         lh->untrack(MY_DOMAIN, (uintptr_t)ptr);
 *     }
 *
 * Both functions may be called from any thread, with or without the GIL;
 * with the GIL held, the block gets the current Python traceback.  They
 * return 0 on success, -2 when pyleakhunt is not tracing, and -1 when the
 * tracer could not record the block (its loss is counted in get_stats())
 * or was given a NULL address.
 * Domain 0 is the Python heap itself; use any other number.
 */
#ifndef PYLEAKHUNT_H
#define PYLEAKHUNT_H

#include <Python.h>
#include <stdint.h>

#define PYLEAKHUNT_CAPI_NAME "pyleakhunt._core._C_API"
#define PYLEAKHUNT_CAPI_VERSION 1

typedef struct {
    int version; /* PYLEAKHUNT_CAPI_VERSION of the provider */
    int (*track)(unsigned int domain, uintptr_t ptr, size_t size);
    int (*untrack)(unsigned int domain, uintptr_t ptr);
    int (*is_tracing)(void);
} PyLeakHunt_CAPI;

/* Import the API.  Returns NULL (and clears the error) when pyleakhunt is
   not installed or is too old.  Call it with the GIL held. */
static inline const PyLeakHunt_CAPI *
PyLeakHunt_Import(void)
{
    const PyLeakHunt_CAPI *api =
        (const PyLeakHunt_CAPI *)PyCapsule_Import(PYLEAKHUNT_CAPI_NAME, 0);
    if (api == NULL || api->version < PYLEAKHUNT_CAPI_VERSION) {
        PyErr_Clear();
        return NULL;
    }
    return api;
}

#endif /* PYLEAKHUNT_H */
