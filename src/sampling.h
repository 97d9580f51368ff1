/* sampling.h - sampled tracing: which allocations to record, and weights.
 *
 * With a mean gap of N bytes, the bytes a thread allocates are cut by a
 * Poisson process of rate 1/N: an allocation is recorded when the
 * thread's countdown of bytes (drawn from an exponential distribution of
 * mean N) runs out.  A block of s bytes is then recorded with probability
 * p = 1 - exp(-s/N), independently of everything else, so weighting it by
 * 1/p gives unbiased estimates of live blocks and bytes.  This is the model
 * of Go's heap profiler and of tcmalloc.
 *
 * Frees must stay cheap although most blocks were never recorded: a bitmap
 * indexed by a hash of the address says "maybe recorded"; only then does a
 * free take the lock and look the block up.
 */
#ifndef PYLEAKHUNT_SAMPLING_H
#define PYLEAKHUNT_SAMPLING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* log2 of the number of bits in the filter: 4 Mi bits, 512 KiB. */
#define LH_FILTER_BITS_LOG2 22

typedef struct {
    _Atomic uint64_t *words; /* NULL when not sampling */
    uint64_t adds_since_rebuild;
} lh_sample_filter;

typedef struct {
    size_t bytes; /* estimated bytes: round(s / p) */
    double count; /* estimated blocks: 1 / p */
} lh_weight;

/* Whether the calling thread records an allocation of `size` bytes when
   the mean gap is `mean` bytes.  Lock free: the countdown is per thread. */
int lh_sample_take(size_t size, size_t mean);

/* The weight of a recorded block of `size` bytes; exact for mean 0. */
lh_weight lh_sample_weight(size_t size, size_t mean);

/* Allocate the filter, or clear it if it exists.  It is never freed: a
   free() in another thread may be reading it at any time, so it stays for
   the life of the process (512 KiB, outside get_tracemalloc_memory()). */
int lh_filter_reset(lh_sample_filter *filter);
/* Mark `ptr` as maybe recorded (tracer lock held). */
void lh_filter_add(lh_sample_filter *filter, uintptr_t ptr);
/* 0 when `ptr` was certainly not recorded.  No lock needed. */
int lh_filter_maybe(const lh_sample_filter *filter, uintptr_t ptr);
struct lh_block_table;
/* Clear the bits of blocks that are no longer live (tracer lock held). */
int lh_filter_rebuild(lh_sample_filter *filter,
                      const struct lh_block_table *blocks);

#endif /* PYLEAKHUNT_SAMPLING_H */
