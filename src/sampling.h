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
 * Frees must stay cheap although most blocks were never recorded: a
 * counting filter indexed by a hash of the address says "maybe recorded";
 * only then does a free take the lock and look the block up.
 */
#ifndef PYLEAKHUNT_SAMPLING_H
#define PYLEAKHUNT_SAMPLING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* log2 of the number of counters in the filter: 16 Ki one-byte counters,
   16 KiB, which stays in the L1 cache (a miss on every free cost more than
   everything else the hooks do in sampled mode). */
#define LH_FILTER_LOG2 14

/* A counting filter: counter[h(ptr)] is the number of recorded blocks
   whose address hashes there.  A free whose counter is 0 was certainly not
   recorded.  Plain bits would not do: pymalloc hands the same addresses out
   again and again, and a bit set by one recorded block would send every
   later free of that address down the slow path; a counter drops back to 0
   when the recorded block is freed.  Counters saturate at 255 and then stay
   (a slower path for that slot, never a wrong answer). */
typedef struct {
    _Atomic uint8_t *counters; /* NULL until sampling is first used */
} lh_sample_filter;

typedef struct {
    size_t bytes; /* estimated bytes: round(s / p) */
    double count; /* estimated blocks: 1 / p */
} lh_weight;

/* Whether the calling thread records an allocation of `size` bytes when
   the mean gap is `mean` bytes.  Lock free: the countdown is per thread. */
int lh_sample_take(size_t size, size_t mean);

/* 1, with the countdown advanced, when an allocation of `size` bytes is
   certainly not sampled; 0 when lh_sample_take() must decide. */
int lh_sample_fast_skip(size_t size, size_t mean);

/* Forget this thread's generator state (after fork, in the child). */
void lh_sample_reseed(void);

/* The weight of a recorded block of `size` bytes; exact for mean 0. */
lh_weight lh_sample_weight(size_t size, size_t mean);

/* Allocate the filter, or clear it if it exists.  It is never freed: a
   free() in another thread may be reading it at any time, so it stays for
   the life of the process (64 KiB, outside get_tracemalloc_memory()). */
int lh_filter_reset(lh_sample_filter *filter);
/* A block at `ptr` was recorded / forgotten (tracer lock held). */
void lh_filter_add(lh_sample_filter *filter, uintptr_t ptr);
void lh_filter_remove(lh_sample_filter *filter, uintptr_t ptr);
/* 0 when `ptr` was certainly not recorded.  No lock needed. */
static inline int
lh_filter_maybe(const lh_sample_filter *filter, uintptr_t ptr)
{
    size_t slot = (size_t)(((uint64_t)ptr * 0x9E3779B97F4A7C15u)
                           >> (64 - LH_FILTER_LOG2));
    return filter->counters == NULL
           || atomic_load_explicit(&filter->counters[slot],
                                   memory_order_relaxed) != 0;
}

#endif /* PYLEAKHUNT_SAMPLING_H */
