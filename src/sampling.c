/* sampling.c - the per-thread byte countdown, weights, and the filter. */
#include "tables.h" /* first: it brings Python.h */

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sampling.h"

/* Per-thread sampling state (like the re-entrancy flag in hooks.c, it
   cannot live in the global struct).  `mean` remembers which mean the
   countdown was drawn for, so a restart with another mean redraws. */
static __thread int64_t lh_countdown
    __attribute__((tls_model("initial-exec")));
static __thread size_t lh_countdown_mean
    __attribute__((tls_model("initial-exec")));
static __thread uint64_t lh_rng __attribute__((tls_model("initial-exec")));

/* xorshift64*: fast, and plenty for spacing samples. */
static uint64_t
next_random(void)
{
    if (lh_rng == 0) {
        /* Seeded per thread (the TLS address differs between threads). */
        lh_rng = ((uint64_t)(uintptr_t)&lh_rng * 0x9E3779B97F4A7C15u)
                 ^ ((uint64_t)time(NULL) << 20) ^ (uint64_t)clock()
                 ^ ((uint64_t)getpid() << 40) ^ 1u;
    }
    lh_rng ^= lh_rng >> 12;
    lh_rng ^= lh_rng << 25;
    lh_rng ^= lh_rng >> 27;
    return lh_rng * 0x2545F4914F6CDD1Du;
}

/* An exponential gap of mean `mean` bytes, at least 1. */
static int64_t
draw_gap(size_t mean)
{
    /* 53 random bits in (0, 1]: log() never sees 0. */
    double u = ((double)(next_random() >> 11) + 1.0) / 9007199254740992.0;
    double gap = -log(u) * (double)mean;
    if (gap < 1.0) {
        return 1;
    }
    if (gap > 9.0e18) {
        return INT64_MAX;
    }
    return (int64_t)gap;
}

int
lh_sample_take(size_t size, size_t mean)
{
    if (lh_countdown_mean != mean) {
        lh_countdown_mean = mean;
        lh_countdown = draw_gap(mean);
    }
    lh_countdown -= (int64_t)size;
    if (lh_countdown > 0) {
        return 0;
    }
    /* Memoryless: a fresh gap from here, whatever this block overshot. */
    lh_countdown = draw_gap(mean);
    return 1;
}

int
lh_sample_fast_skip(size_t size, size_t mean)
{
    if (lh_countdown_mean == mean && lh_countdown > (int64_t)size) {
        lh_countdown -= (int64_t)size;
        return 1;
    }
    return 0;
}

void
lh_sample_reseed(void)
{
    /* A forked child starts with its parent's generator: without this,
       the workers of a preforking server would all sample the same
       allocations. */
    lh_rng = 0;
    lh_countdown_mean = 0;
}

lh_weight
lh_sample_weight(size_t size, size_t mean)
{
    if (mean == 0 || size == 0) {
        return (lh_weight){size, 1.0};
    }
    double p = -expm1(-(double)size / (double)mean);
    return (lh_weight){(size_t)llround((double)size / p), 1.0 / p};
}

/* ---- the maybe-recorded filter ---------------------------------------- */

#define FILTER_SIZE ((size_t)1 << LH_FILTER_LOG2)

static inline size_t
filter_slot(uintptr_t ptr)
{
    return (size_t)(((uint64_t)ptr * 0x9E3779B97F4A7C15u)
                    >> (64 - LH_FILTER_LOG2));
}

int
lh_filter_reset(lh_sample_filter *filter)
{
    if (filter->counters == NULL) {
        filter->counters = calloc(FILTER_SIZE, 1);
        return filter->counters != NULL ? 0 : -1;
    }
    for (size_t i = 0; i < FILTER_SIZE; i++) {
        atomic_store_explicit(&filter->counters[i], 0, memory_order_relaxed);
    }
    return 0;
}

/* Writers hold the tracer lock, so a load and a store need no RMW. */
void
lh_filter_add(lh_sample_filter *filter, uintptr_t ptr)
{
    _Atomic uint8_t *c = &filter->counters[filter_slot(ptr)];
    uint8_t n = atomic_load_explicit(c, memory_order_relaxed);
    if (n < UINT8_MAX) {
        atomic_store_explicit(c, (uint8_t)(n + 1), memory_order_relaxed);
    }
}

void
lh_filter_remove(lh_sample_filter *filter, uintptr_t ptr)
{
    _Atomic uint8_t *c = &filter->counters[filter_slot(ptr)];
    uint8_t n = atomic_load_explicit(c, memory_order_relaxed);
    if (n > 0 && n < UINT8_MAX) {
        atomic_store_explicit(c, (uint8_t)(n - 1), memory_order_relaxed);
    }
}
