/* tables.h - the tracer's tables: live blocks, call sites, foreign blocks.
 *
 * Three tables, each owned by the global tracer state (state.h) and guarded
 * by its lock:
 *
 *   - the block table maps the address of every live traced block of the
 *     Python domains to its size and the id of its call site.  It holds
 *     millions of entries, so it is a compact open-addressing table written
 *     for the purpose (16 bytes a block), not uthash (about 70 bytes a
 *     block); see docs/design.md.
 *   - the site table interns call sites: a (domain, tag, traceback) key
 *     with live aggregates (blocks, bytes, lowest bytes since the last
 *     snapshot).  Snapshots copy these
 *     aggregates instead of every block.  uthash, plus an array by id.
 *   - the foreign table holds blocks tracked through the C API in numbered
 *     domains other than 0; they are few, so uthash is fine there.
 *
 * Nothing here allocates with the Python allocators: every byte comes from
 * lh_mem_alloc(), so the tables never re-enter the allocator hooks.
 */
#ifndef PYLEAKHUNT_TABLES_H
#define PYLEAKHUNT_TABLES_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "frames.h"
#include "uthash_config.h"

/* ---- memory for the tracer's own use -------------------------------- */

void *lh_mem_alloc(size_t size);
void *lh_mem_calloc(size_t n, size_t size);
/* Zeroed memory aligned on a cache line; `size` a multiple of 64. */
void *lh_mem_calloc_line(size_t size);
void lh_mem_free(void *ptr, size_t size);
/* Bytes currently allocated through lh_mem_alloc/calloc. */
size_t lh_mem_used(void);
/* Make the next internal allocations fail after `countdown` successes
   (-1 disables).  Used by tests to drive the out-of-memory path. */
void lh_mem_fail_after(long countdown);

/* ---- call sites ------------------------------------------------------ */

/* The part of a site that identifies it: whole 64-bit words, hashed and
   compared word by word.  The header fields are packed in two words and
   written as such, because reading a word just written as smaller pieces
   stalls the CPU (a failed store-to-load forward) on every allocation. */
typedef struct {
    uint64_t where; /* domain | tag << 32 */
    uint64_t depth; /* nframe | total_nframe << 32 */
    lh_frame frames[];
} lh_site_key;

static inline uint64_t
lh_key_where(unsigned int domain, uint32_t tag)
{
    return (uint64_t)domain | ((uint64_t)tag << 32);
}

static inline uint64_t
lh_key_depth(int nframe, unsigned int total_nframe)
{
    return (uint64_t)(uint32_t)nframe | ((uint64_t)total_nframe << 32);
}

static inline unsigned int
lh_key_domain(const lh_site_key *key)
{
    return (unsigned int)(key->where & 0xFFFFFFFFu);
}

static inline uint32_t
lh_key_tag(const lh_site_key *key)
{
    return (uint32_t)(key->where >> 32);
}

static inline int
lh_key_nframe(const lh_site_key *key)
{
    return (int)(key->depth & 0xFFFFFFFFu);
}

static inline unsigned int
lh_key_total_nframe(const lh_site_key *key)
{
    return (unsigned int)(key->depth >> 32);
}

typedef struct lh_site {
    UT_hash_handle hh;
    uint64_t hash;
    /* Sum over live sampled blocks of 1/p (see hooks.c); 0 when exact. */
    double est_count;
    double est_size;
    /* Cached tuple of (filename, lineno) frames, built under the GIL the
       first time a snapshot needs it.  NULL until then. */
    void *resolved;
    /* Links sites taken out by lh_sites_unlink_empty(). */
    struct lh_site *next_unlinked;
    /* Whether the frames are all library code, once asked (hooks.c,
       site_wants_user_frame): 0 not known yet, else an lh_site_class. */
    uint8_t user_class;
    /* Searches for the user's frame from here that found none in a row. */
    uint8_t user_misses;
    /* What every allocation and free reads or writes starts a cache line
       (sites are allocated aligned): with one frame, all of it fits in
       that line, so a site costs one cache miss per event, not two. */
    _Alignas(64) size_t count; /* live aggregates */
    size_t size;
    /* The lowest `size` since the last snapshot (module.c), or since the
       site was made (then 0): a leak raises it, while memory that comes
       and goes at the site between two snapshots does not.  The
       sustained-growth rule (pyleakhunt/growth.py) reads it as the site's
       floor. */
    size_t low;
    uint32_t id;
    uint32_t keylen;
    lh_site_key key; /* must stay last: frames follow */
} lh_site;

/* Bytes allocated for a site whose key is `keylen` bytes. */
#define LH_SITE_ALLOC(keylen) \
    ((offsetof(lh_site, key) + (keylen) + 63) & ~(size_t)63)

#define LH_SITE_CACHE_LOG2 11
#define LH_SITE_CACHE_SIZE (1u << LH_SITE_CACHE_LOG2)

/* The sites found last for positions (lh_frames_position), by hooks.c's
   common case: one entry per position, in a small direct-mapped table.
   A site holds its code, so the position it was found for keeps naming
   that code and instruction for as long as the site is in the table;
   unlinking sites clears the memo.  A loop allocates at a handful of
   positions in turn (W1 at some ten an iteration, from the loop's own
   instructions and the C calls they make), so one entry for the last
   position only would be asked at a new one most of the time.  Slots are
   taken by instruction, so that a loop's instructions, close together in
   its code, take different ones. */
#define LH_MEMO_LOG2 6

/* An entry compares two words (three before 3.11): the instruction,
   and the request tag with the stack's depth.  Only the Python domain's
   allocations ask the memo, so the domain needs no room.  From 3.11 the
   instruction pointer names one code by itself, and the frame's address
   adds nothing: a position is a code, an instruction, a depth and a tag,
   whichever frame runs it. */
typedef struct {
    uintptr_t instr;
    uint64_t tag_total; /* lh_memo_tag_total() */
#if PY_VERSION_HEX < 0x030B0000
    const void *at; /* the code: instr is an offset in it */
#endif
    lh_site *site;
} lh_memo_entry;

typedef struct {
    lh_memo_entry entries[1u << LH_MEMO_LOG2];
} lh_site_memo;

typedef struct {
    lh_site *by_key;  /* uthash head */
    lh_site_memo memo;
    lh_site_memo shadow; /* testing: the memo_check's (state.h) */
    lh_site *cache[LH_SITE_CACHE_SIZE]; /* recently used, by hash */
    lh_site **by_id;  /* id -> site (NULL: a free id), O(1) from a block */
    uint32_t nsites;  /* ids in use are below this */
    uint32_t capacity;
    uint32_t *free_ids; /* ids of unlinked sites, to reuse (capacity) */
    uint32_t nfree;
} lh_site_table;

/* Hash of a key of `keylen` bytes. */
uint64_t lh_site_hash(const lh_site_key *key, size_t keylen);

/* The slot of `pos` in a memo. */
static inline size_t
lh_memo_index(lh_position pos)
{
    return lh_position_index(pos) & ((1u << LH_MEMO_LOG2) - 1);
}

static inline uint64_t
lh_memo_tag_total(lh_position pos, uint32_t tag)
{
    return (uint64_t)tag << 32 | pos.total;
}

/* The site memo `m` holds for `pos` and the request `tag`, else NULL. */
static inline lh_site *
lh_memo_get(const lh_site_memo *m, lh_position pos, uint32_t tag)
{
    const lh_memo_entry *e = &m->entries[lh_memo_index(pos)];
    int same = e->instr == pos.instr
               && e->tag_total == lh_memo_tag_total(pos, tag);
#if PY_VERSION_HEX < 0x030B0000
    same = same && e->at == pos.at;
#endif
    return same ? e->site : NULL;
}

/* Remember `site` as the one for `pos` and `tag` (no position: nothing
   is). */
static inline void
lh_memo_put(lh_site_memo *m, lh_position pos, uint32_t tag, lh_site *site)
{
    if (pos.at != NULL) {
        lh_memo_entry *e = &m->entries[lh_memo_index(pos)];
        e->instr = pos.instr;
        e->tag_total = lh_memo_tag_total(pos, tag);
#if PY_VERSION_HEX < 0x030B0000
        e->at = pos.at;
#endif
        e->site = site;
    }
}

/* Find or create the site for `key`.  A new site takes strong references
   to the code objects in its frames, so the caller must hold the GIL when
   the key has frames.  Returns NULL when memory is exhausted. */
lh_site *lh_sites_intern(lh_site_table *t, const lh_site_key *key,
                         size_t keylen);
/* The site of the key (where, depth, frame), if the cache holds it, else
   NULL.  For the hooks' common case, which keeps its key of at most one
   frame in registers (`frame` is ignored when the depth has none). */
lh_site *lh_sites_cached_one(lh_site_table *t, uint64_t where,
                             uint64_t depth, const lh_frame *frame);
/* Take out every site with no live blocks (lock held), and return them as
   a list for lh_sites_release_unlinked() (GIL held, lock not held: dropping
   code references can free objects).  Without this, sites of code compiled
   on the fly would keep its code objects alive for as long as tracing goes
   on. */
lh_site *lh_sites_unlink_empty(lh_site_table *t);
/* The same for every site, leaving the table empty. */
lh_site *lh_sites_unlink_all(lh_site_table *t);
void lh_sites_release_unlinked(lh_site *list);
size_t lh_sites_memory(const lh_site_table *t);

/* ---- live blocks ----------------------------------------------------- */

typedef struct {
    uintptr_t ptr;  /* 0 marks an empty slot */
    uint32_t site_id;
    uint32_t size;  /* LH_BIG_SIZE: the real size is in the big table */
} lh_block;

#define LH_BIG_SIZE UINT32_MAX

typedef struct lh_big_size {
    UT_hash_handle hh;
    uintptr_t ptr;
    size_t size;
} lh_big_size;

/* The nursery: a small direct-mapped table of the most recently
   allocated blocks, in front of the main one.  Most blocks die young, and
   die in the nursery: their record never touches the main table, which
   is too big to stay in the cache.  Older blocks are moved to the main
   table when a newer block needs their nursery slot. */
#define LH_NURSERY_LOG2 11

/* The absent memo: addresses a lookup found in neither table, one per
   slot (direct-mapped, by the same address hash as the nursery).  The
   reference tracer looks up every object reused from a free list, and in
   a steady loop the same few objects, on the free lists since before
   tracing started and so never recorded, come back every iteration: a
   second lookup of such an address costs one compare, and no lock.
   Recording a block clears its address's slot, so an address in the memo
   is never in the table.  512 bytes: small enough that clearing a slot
   on every allocation stays in the L1 cache. */
#define LH_ABSENT_LOG2 6

/* The pending record: the last block moved out of the nursery, not yet
   written to its home slot in the main table.  That slot is at a random
   place in a table too big for the caches, so reading it at once stalled
   the allocation that evicted the block (half of obj_malloc's samples in
   W1, whose results outlive the nursery).  Instead its cache line is
   prefetched, and the record is written at the next eviction, by when
   the line has usually arrived.  Lookups look here between the nursery
   and the main table; to anything that walks the records it is one more
   slot. */
typedef struct lh_block_table {
    lh_block *slots;
    size_t capacity;  /* a power of two, or 0 */
    size_t used;      /* entries in `slots` */
    size_t limit;     /* entries above which an insert grows `slots` */
    unsigned int shift;  /* 64 - log2(capacity) */
    lh_big_size *big;
    lh_block nursery[1u << LH_NURSERY_LOG2]; /* never blocks of LH_BIG_SIZE */
    lh_block pending; /* ptr 0: none; never a block of LH_BIG_SIZE */
    /* Written under the lock, read without it by lh_blocks_known_absent
       (relaxed atomics: one aligned word, no ordering needed). */
    _Atomic uintptr_t absent[1u << LH_ABSENT_LOG2];
} lh_block_table;

/* The slot of `ptr` in the absent memo: the top bits of the Fibonacci
   hash the nursery uses, so that one multiplication serves both. */
static inline size_t
lh_blocks_absent_slot(uintptr_t ptr)
{
    return (size_t)(((uint64_t)ptr * 0x9E3779B97F4A7C15u)
                    >> (64 - LH_ABSENT_LOG2));
}

/* Whether `ptr` is certainly not recorded (in the absent memo).  Safe
   without the lock for an address the caller's live object occupies:
   nobody can record that address while the object lives, so a slot that
   holds it cannot be cleared meanwhile, and a slot being changed for
   another address reads as "not known". */
static inline int
lh_blocks_known_absent(lh_block_table *t, uintptr_t ptr)
{
    return atomic_load_explicit(&t->absent[lh_blocks_absent_slot(ptr)],
                                memory_order_relaxed)
           == ptr;
}

/* A record the table let go of while inserting another block: a stale
   record of a block freed behind the tracer's back whose address came
   back, or one that no longer had room.  The caller un-counts it. */
typedef struct {
    uintptr_t ptr;
    uint32_t site_id;
    size_t size;
} lh_block_record;

#define LH_MAX_DROPPED 4

/* Record a block just allocated.  Returns 0, or -1 when it could not be
   recorded (out of memory).  Either way, the records the table let go of
   meanwhile are in dropped[0 .. *ndropped) (at most LH_MAX_DROPPED).
   A stale record of the same address in the main table (a free the tracer
   missed) is only dropped when this one moves there; the allocator hooks
   see nearly every free, and checking the main table on every allocation
   would cost the cache miss the nursery is there to save. */
int lh_blocks_put(lh_block_table *t, uintptr_t ptr, uint32_t site_id,
                  size_t size, lh_block_record *dropped, int *ndropped);
/* lh_blocks_put's common case: a block of less than LH_BIG_SIZE bytes
   whose nursery slot is free.  Returns 1, or 0 having done nothing. */
int lh_blocks_put_young(lh_block_table *t, uintptr_t ptr, uint32_t site_id,
                        size_t size);
/* lh_blocks_pop's common case: a block still in the nursery.  Returns 1,
   or 0 having done nothing. */
int lh_blocks_pop_young(lh_block_table *t, uintptr_t ptr, uint32_t *site_id,
                        size_t *size);
/* The next cases, for a caller whose _young call just returned 0.  Put:
   the nursery slot holds another block, which becomes the pending one,
   while the block pending before goes to its home slot in the main table,
   which is free (W1 keeps 1,000 results alive: some 9 blocks an iteration
   take this path).  Pop: the block is the pending one, or in its home
   slot of the main table with no block after it to shift back.  Each
   returns 1, or 0 having done nothing. */
int lh_blocks_put_evicting(lh_block_table *t, uintptr_t ptr,
                           uint32_t site_id, size_t size);
int lh_blocks_pop_home(lh_block_table *t, uintptr_t ptr, uint32_t *site_id,
                       size_t *size);
/* The same, replacing any record of `ptr` at once: for callers that may
   record an address twice (the C API). */
int lh_blocks_replace(lh_block_table *t, uintptr_t ptr, uint32_t site_id,
                      size_t size, lh_block_record *dropped, int *ndropped);
/* Remove `ptr`.  Returns 1 and its site and size when it was present. */
int lh_blocks_pop(lh_block_table *t, uintptr_t ptr, uint32_t *site_id,
                  size_t *size);
/* The live record of `ptr`, or NULL (then `ptr` goes in the absent
   memo).  The pointer is valid until the table next changes. */
lh_block *lh_blocks_lookup(lh_block_table *t, uintptr_t ptr);
/* The same, for the block of an object reused from a free list: a
   record found in the main table or the pending slot moves into the
   nursery, where the object's next reuse finds it (tables.c). */
lh_block *lh_blocks_lookup_reused(lh_block_table *t, uintptr_t ptr);
/* Look `ptr` up without removing it. */
int lh_blocks_get(lh_block_table *t, uintptr_t ptr, uint32_t *site_id,
                  size_t *size);
size_t lh_blocks_size_of(const lh_block_table *t, const lh_block *b);
/* Every record: slot i for i < lh_blocks_nslots(), in use when ptr != 0. */
size_t lh_blocks_nslots(const lh_block_table *t);
const lh_block *lh_blocks_slot(const lh_block_table *t, size_t i);
size_t lh_blocks_count(const lh_block_table *t);
void lh_blocks_clear(lh_block_table *t);
size_t lh_blocks_memory(const lh_block_table *t);

/* ---- foreign domains ------------------------------------------------- */

/* Compared with memcmp by uthash, so it must have no padding. */
typedef struct {
    uint64_t domain;
    uintptr_t ptr;
} lh_foreign_key;

typedef struct lh_foreign {
    UT_hash_handle hh;
    lh_foreign_key key;
    size_t size;
    uint32_t site_id;
} lh_foreign;

#endif /* PYLEAKHUNT_TABLES_H */
