/* uthash_config.h - include uthash with the tracer's own allocator.
 *
 * uthash must never allocate through PyMem_* (that would re-enter the
 * allocator hooks), and must not abort the process when memory runs out:
 * a failed insert only loses one record, which the tracer counts.
 */
#ifndef PYLEAKHUNT_UTHASH_CONFIG_H
#define PYLEAKHUNT_UTHASH_CONFIG_H

#include <stddef.h>

void *lh_mem_alloc(size_t size);
void lh_mem_free(void *ptr, size_t size);

#define uthash_malloc(sz) lh_mem_alloc(sz)
#define uthash_free(ptr, sz) lh_mem_free((ptr), (sz))
/* On failure uthash leaves the table unchanged and sets this flag. */
#define HASH_NONFATAL_OOM 1
void lh_mem_note_oom(void);
#define uthash_nonfatal_oom(elt) lh_mem_note_oom()

#include <uthash.h>

#endif /* PYLEAKHUNT_UTHASH_CONFIG_H */
