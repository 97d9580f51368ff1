/* tables.c - live blocks, call sites, and the tracer's own memory.
 *
 * The block table is open addressing with Robin Hood insertion and
 * backward-shift deletion.  Why not uthash: a uthash entry costs a 56-byte
 * handle plus the malloc header and bucket array, about 90 bytes a block;
 * with millions of live blocks that is more than the program's own data.
 * Robin Hood keeps probe sequences short even at 85% load, so a slot costs
 * 16 bytes and a block costs 19 to 40 bytes depending on where the table
 * is in its growth cycle.  Lookups of absent addresses (frees of blocks
 * allocated before tracing started) stop early too.
 */
#include <stdlib.h>
#include <string.h>

#include "state.h"
#include "tables.h"

/* ---- the tracer's own memory ----------------------------------------- */

/* libc, not PyMem: the tables must never re-enter the allocator hooks. */
static int
mem_should_fail(void)
{
    long left = atomic_load(&lh_tracer.mem_fail_countdown);
    if (left < 0) {
        return 0;
    }
    if (left == 0) {
        return 1;
    }
    atomic_fetch_sub(&lh_tracer.mem_fail_countdown, 1);
    return 0;
}

/* `ptr`, fresh from libc, counted as `size` bytes of the tracer's own. */
static void *
counted(void *ptr, size_t size)
{
    if (ptr != NULL) {
        atomic_fetch_add(&lh_tracer.mem_used, size);
    }
    return ptr;
}

void *
lh_mem_alloc(size_t size)
{
    return mem_should_fail() ? NULL : counted(malloc(size), size);
}

void *
lh_mem_calloc(size_t n, size_t size)
{
    return mem_should_fail() ? NULL : counted(calloc(n, size), n * size);
}

void *
lh_mem_calloc_line(size_t size)
{
    if (mem_should_fail()) {
        return NULL;
    }
    void *ptr = counted(aligned_alloc(64, size), size);
    if (ptr != NULL) {
        memset(ptr, 0, size);
    }
    return ptr;
}

void
lh_mem_free(void *ptr, size_t size)
{
    if (ptr != NULL) {
        atomic_fetch_sub(&lh_tracer.mem_used, size);
        free(ptr);
    }
}

size_t
lh_mem_used(void)
{
    return atomic_load(&lh_tracer.mem_used);
}

void
lh_mem_fail_after(long countdown)
{
    atomic_store(&lh_tracer.mem_fail_countdown, countdown);
}

void
lh_mem_note_oom(void)
{
    lh_tracer.mem_oom = 1;
}

/* ---- call sites ------------------------------------------------------ */

uint64_t
lh_site_hash(const lh_site_key *key, size_t keylen)
{
    /* FxHash over the key's words, then a final fold so the low bits see the high ones. */
    const uint64_t *word = (const uint64_t *)key;
    uint64_t h = keylen;
    for (size_t i = 0; i < keylen / 8; i++) {
        h = (((h << 5) | (h >> 59)) ^ word[i]) * 0x517CC1B727220A95u;
    }
    return h ^ (h >> 29);
}

static inline int
same_frame(const lh_frame *a, const lh_frame *b)
{
    return a->code == b->code && a->lasti == b->lasti;
}

/* Keys of equal depth words have the same length, so the length needs no
   compare; frames are compared as pairs, most recent first. */
static inline int
keys_equal(const lh_site_key *a, const lh_site_key *b)
{
    if (a->where != b->where || a->depth != b->depth) {
        return 0;
    }
    for (int i = 0; i < lh_key_nframe(a); i++) {
        if (!same_frame(&a->frames[i], &b->frames[i])) {
            return 0;
        }
    }
    return 1;
}

/* A two-way set-associative cache in front of uthash, indexed by a cheap
   hash of the most recent frame and the depth (one multiply, where the
   full hash is a chain of one per word).  A hot allocation site is then
   found with one or two probes and word compares: no full hash, no uthash
   bucket walk.  (Direct-mapped, 1024 entries missed 8% of the lookups of
   a Flask request, two-way 2048 entries about 1%.)  `slot` is a set's
   first way; a new entry goes there and pushes the other out. */
static inline size_t
cache_slot(const lh_site_key *key)
{
    uint64_t h = key->depth ^ key->where;
    if (lh_key_nframe(key) > 0) {
        h ^= (uint64_t)(uintptr_t)key->frames[0].code
             ^ ((uint64_t)key->frames[0].lasti << 40);
    }
    return (size_t)((h * 0x9E3779B97F4A7C15u) >> (64 - LH_SITE_CACHE_LOG2))
           & ~(size_t)1;
}

static lh_site *
sites_cached(lh_site_table *t, const lh_site_key *key, size_t slot)
{
    for (size_t way = slot; way < slot + 2; way++) {
        lh_site *site = t->cache[way];
        if (site != NULL && keys_equal(&site->key, key)) {
            return site;
        }
    }
    return NULL;
}

static void
cache_put(lh_site_table *t, size_t slot, lh_site *site)
{
    t->cache[slot + 1] = t->cache[slot];
    t->cache[slot] = site;
}

/* An id for a new site: a freed one, or the next; UINT32_MAX if none. */
static uint32_t
sites_reserve_id(lh_site_table *t)
{
    if (t->nfree > 0) {
        return t->free_ids[--t->nfree];
    }
    if (t->nsites == UINT32_MAX - 1) {
        return UINT32_MAX;
    }
    if (t->nsites < t->capacity) {
        return t->nsites++;
    }
    uint32_t capacity = t->capacity ? t->capacity * 2 : 1024;
    lh_site **by_id = lh_mem_alloc(capacity * sizeof(lh_site *));
    uint32_t *free_ids = lh_mem_alloc(capacity * sizeof(uint32_t));
    if (by_id == NULL || free_ids == NULL) {
        lh_mem_free(by_id, capacity * sizeof(lh_site *));
        lh_mem_free(free_ids, capacity * sizeof(uint32_t));
        return UINT32_MAX;
    }
    if (t->nsites) {
        memcpy(by_id, t->by_id, t->nsites * sizeof(lh_site *));
    }
    lh_mem_free(t->by_id, t->capacity * sizeof(lh_site *));
    lh_mem_free(t->free_ids, t->capacity * sizeof(uint32_t));
    t->by_id = by_id;
    t->free_ids = free_ids;
    t->capacity = capacity;
    return t->nsites++;
}

static void
sites_return_id(lh_site_table *t, uint32_t id)
{
    t->by_id[id] = NULL;
    t->free_ids[t->nfree++] = id;
}

/* A site not in the cache: look it up in uthash, or create it. */
static __attribute__((noinline)) lh_site *
sites_find_or_add(lh_site_table *t, const lh_site_key *key, size_t keylen,
                  size_t slot)
{
    lh_site *site;
    uint64_t hash = lh_site_hash(key, keylen);
    HASH_FIND_BYHASHVALUE(hh, t->by_key, key, keylen, (unsigned)hash, site);
    if (site != NULL) {
        cache_put(t, slot, site);
        return site;
    }
    uint32_t id = sites_reserve_id(t);
    if (id == UINT32_MAX) {
        return NULL;
    }
    size_t alloc = LH_SITE_ALLOC(keylen);
    site = lh_mem_calloc_line(alloc);
    if (site == NULL) {
        sites_return_id(t, id);
        return NULL;
    }
    memcpy(&site->key, key, keylen);
    site->keylen = (uint32_t)keylen;
    site->hash = hash;
    site->id = id;
    lh_tracer.mem_oom = 0;
    HASH_ADD_BYHASHVALUE(hh, t->by_key, key, keylen, (unsigned)hash, site);
    if (lh_tracer.mem_oom) {
        lh_mem_free(site, alloc);
        sites_return_id(t, id);
        return NULL;
    }
    /* The frames outlive the stack they came from, so keep the code
       objects alive; their lines are resolved only at snapshot time. */
    for (int i = 0; i < lh_key_nframe(key); i++) {
        Py_INCREF(site->key.frames[i].code);
    }
    t->by_id[id] = site;
    cache_put(t, slot, site);
    return site;
}

lh_site *
lh_sites_cached_one(lh_site_table *t, uint64_t where, uint64_t depth,
                    const lh_frame *frame)
{
    struct {
        lh_site_key key;
        lh_frame frame;
    } one = {{where, depth}, *frame};
    size_t slot = cache_slot(&one.key);
    for (size_t way = slot; way < slot + 2; way++) {
        lh_site *site = t->cache[way];
        if (site != NULL && site->key.where == where
            && site->key.depth == depth
            && (lh_key_nframe(&one.key) == 0
                || same_frame(&site->key.frames[0], frame))) {
            return site;
        }
    }
    return NULL;
}

lh_site *
lh_sites_intern(lh_site_table *t, const lh_site_key *key, size_t keylen)
{
    size_t slot = cache_slot(key);
    lh_site *site = sites_cached(t, key, slot);
    if (site != NULL) {
        return site;
    }
    return sites_find_or_add(t, key, keylen, slot);
}

static void
site_release(lh_site *site)
{
    for (int f = 0; f < lh_key_nframe(&site->key); f++) {
        Py_DECREF(site->key.frames[f].code);
    }
    Py_XDECREF((PyObject *)site->resolved);
    lh_mem_free(site, LH_SITE_ALLOC(site->keylen));
}

/* Empty everything that points at sites other than by_id and by_key:
   sites are about to be unlinked and released. */
static void
sites_forget_pointers(lh_site_table *t)
{
    memset(t->cache, 0, sizeof(t->cache));
    memset(&t->memo, 0, sizeof(t->memo));
    memset(&t->shadow, 0, sizeof(t->shadow));
}

lh_site *
lh_sites_unlink_empty(lh_site_table *t)
{
    lh_site *list = NULL;
    for (uint32_t i = 0; i < t->nsites; i++) {
        lh_site *site = t->by_id[i];
        if (site == NULL || site->count != 0) {
            continue;
        }
        HASH_DELETE(hh, t->by_key, site);
        sites_return_id(t, i);
        site->next_unlinked = list;
        list = site;
    }
    if (list != NULL) {
        sites_forget_pointers(t);
    }
    return list;
}

void
lh_sites_release_unlinked(lh_site *list)
{
    while (list != NULL) {
        lh_site *next = list->next_unlinked;
        site_release(list);
        list = next;
    }
}

lh_site *
lh_sites_unlink_all(lh_site_table *t)
{
    lh_site *list = NULL;
    HASH_CLEAR(hh, t->by_key);
    for (uint32_t i = 0; i < t->nsites; i++) {
        lh_site *site = t->by_id[i];
        if (site != NULL) {
            site->next_unlinked = list;
            list = site;
        }
    }
    lh_mem_free(t->by_id, t->capacity * sizeof(lh_site *));
    lh_mem_free(t->free_ids, t->capacity * sizeof(uint32_t));
    memset(t, 0, sizeof(*t));
    return list;
}

size_t
lh_sites_memory(const lh_site_table *t)
{
    size_t total = t->capacity * (sizeof(lh_site *) + sizeof(uint32_t));
    for (uint32_t i = 0; i < t->nsites; i++) {
        if (t->by_id[i] != NULL) {
            total += LH_SITE_ALLOC(t->by_id[i]->keylen);
        }
    }
    if (t->by_key != NULL) {
        total += t->by_key->hh.tbl->num_buckets * sizeof(UT_hash_bucket);
    }
    return total;
}

/* ---- live blocks ----------------------------------------------------- */

/* A block's home slot.  The records of blocks in the same 128 bytes of
   memory share a cache line of the table (four 16-byte slots), each in a
   slot of its own when the blocks are 32 bytes or more: the line comes
   from a Fibonacci hash of the 128-byte chunk, the slot from the block's
   16-byte unit in it.  The unit goes through a Gray code, so that blocks
   32, 48 or 64 bytes apart take different slots, mixed with two more bits
   of the hash, so that blocks of 128 bytes or more (one a chunk) use all
   four.  Blocks that die together are often neighbours (a list of results
   cleared at once, a request's objects), and their records then come a
   line at a time: fewer cache misses, and W1 took about 1% less time on
   3.14 than with one record a line (docs/design.md, "Speed"). */
static inline size_t
block_home(const lh_block_table *t, uintptr_t ptr)
{
    uint64_t h = (uint64_t)(ptr >> 7) * 0x9E3779B97F4A7C15u;
    uint64_t unit = (ptr >> 4) & 7;
    uint64_t in_line = (unit ^ (unit >> 1) ^ (h >> 20)) & 3;
    return (size_t)(((h >> t->shift) & ~(uint64_t)3) | in_line);
}

static inline size_t
probe_distance(const lh_block_table *t, uintptr_t ptr, size_t slot)
{
    return (slot - block_home(t, ptr)) & (t->capacity - 1);
}

/* Place a block known to be absent, starting the probe at `slot`, which
   is `dist` slots from its home; the table has a free slot. */
static void
blocks_place_from(lh_block_table *t, lh_block entry, size_t slot,
                  size_t dist)
{
    size_t mask = t->capacity - 1;
    for (;;) {
        lh_block *cur = &t->slots[slot];
        if (cur->ptr == 0) {
            *cur = entry;
            t->used++;
            return;
        }
        size_t cur_dist = probe_distance(t, cur->ptr, slot);
        if (cur_dist < dist) {
            /* Robin Hood: the poorer entry takes the slot. */
            lh_block displaced = *cur;
            *cur = entry;
            entry = displaced;
            dist = cur_dist;
        }
        slot = (slot + 1) & mask;
        dist++;
    }
}

static void
blocks_place(lh_block_table *t, lh_block entry)
{
    blocks_place_from(t, entry, block_home(t, entry.ptr), 0);
}

/* Speed or memory: a small table (up to 16 MiB) stays under half full,
   which keeps probes and the shifts on delete short; a big one fills up to
   85%, which keeps the tracer's memory per block low when the heap holds
   millions of blocks. */
static size_t
blocks_limit(size_t capacity)
{
    return capacity < (1u << 20) ? capacity / 2 : capacity / 20 * 17;
}

static int
blocks_resize(lh_block_table *t, size_t capacity)
{
    if (capacity > SIZE_MAX / sizeof(lh_block)) {
        return -1;
    }
    /* Aligned, so that the four homes of a chunk are one cache line. */
    lh_block *slots = lh_mem_calloc_line(capacity * sizeof(lh_block));
    if (slots == NULL) {
        return -1;
    }
    lh_block *old = t->slots;
    size_t old_capacity = t->capacity;
    t->slots = slots;
    t->capacity = capacity;
    t->shift = 64 - (unsigned int)__builtin_ctzll(capacity);
    t->limit = blocks_limit(capacity);
    t->used = 0;
    for (size_t i = 0; i < old_capacity; i++) {
        if (old[i].ptr != 0) {
            blocks_place(t, old[i]);
        }
    }
    lh_mem_free(old, old_capacity * sizeof(lh_block));
    return 0;
}

/* Grow the table if an insert would pass its limit.  If it cannot grow,
   it may fill up to 97% before inserts start to fail (and are counted as
   lost). */
static int
blocks_make_room(lh_block_table *t)
{
    if (t->capacity == 0) {
        return blocks_resize(t, 1u << 16);
    }
    if (t->used + 1 <= t->limit) {
        return 0;
    }
    if (blocks_resize(t, t->capacity * 2) == 0) {
        return 0;
    }
    return t->used + 1 <= t->capacity / 100 * 97 ? 0 : -1;
}

static lh_block *
blocks_find(const lh_block_table *t, uintptr_t ptr)
{
    if (t->capacity == 0) {
        return NULL;
    }
    size_t mask = t->capacity - 1;
    size_t slot = block_home(t, ptr);
    for (size_t dist = 0;; dist++) {
        lh_block *cur = &t->slots[slot];
        if (cur->ptr == ptr) {
            return cur;
        }
        /* Robin Hood order: once we meet an entry closer to its home than
           we are to ours, ptr cannot be further on. */
        if (cur->ptr == 0 || probe_distance(t, cur->ptr, slot) < dist) {
            return NULL;
        }
        slot = (slot + 1) & mask;
    }
}

size_t
lh_blocks_size_of(const lh_block_table *t, const lh_block *b)
{
    if (b->size != LH_BIG_SIZE) {
        return b->size;
    }
    lh_big_size *big;
    HASH_FIND(hh, t->big, &b->ptr, sizeof(uintptr_t), big);
    return big != NULL ? big->size : 0;
}

static void
big_forget(lh_block_table *t, uintptr_t ptr)
{
    lh_big_size *big;
    HASH_FIND(hh, t->big, &ptr, sizeof(uintptr_t), big);
    if (big != NULL) {
        HASH_DEL(t->big, big);
        lh_mem_free(big, sizeof(*big));
    }
}

/* Blocks of 4 GiB or more keep their size in a side table. */
static int
big_remember(lh_block_table *t, uintptr_t ptr, size_t size)
{
    lh_big_size *big = lh_mem_alloc(sizeof(*big));
    if (big == NULL) {
        return -1;
    }
    big->ptr = ptr;
    big->size = size;
    lh_tracer.mem_oom = 0;
    HASH_ADD(hh, t->big, ptr, sizeof(uintptr_t), big);
    if (lh_tracer.mem_oom) {
        lh_mem_free(big, sizeof(*big));
        return -1;
    }
    return 0;
}

/* Replace the record of a block already present at `cur`. */
static int
blocks_replace(lh_block_table *t, lh_block *cur, uint32_t site_id,
               size_t size, uint32_t *old_site, size_t *old_size)
{
    /* The address was freed behind our back (by an allocator we do not
       see) and reused: the new block replaces the old record. */
    uint32_t stored = size >= LH_BIG_SIZE ? LH_BIG_SIZE : (uint32_t)size;
    *old_site = cur->site_id;
    *old_size = lh_blocks_size_of(t, cur);
    if (cur->size == LH_BIG_SIZE) {
        big_forget(t, cur->ptr);
    }
    if (stored == LH_BIG_SIZE && big_remember(t, cur->ptr, size) < 0) {
        return -1;
    }
    cur->site_id = site_id;
    cur->size = stored;
    return 1;
}

/* Insert or replace in the main table.  Returns 1 when an entry for `ptr`
   was replaced (its old site and size in *old), 0 when inserted, -1 when
   out of memory. */
static __attribute__((noinline)) int
main_put(lh_block_table *t, uintptr_t ptr, uint32_t site_id, size_t size,
         uint32_t *old_site, size_t *old_size)
{
    if (blocks_make_room(t) < 0) {
        lh_block *cur = blocks_find(t, ptr);
        return cur ? blocks_replace(t, cur, site_id, size, old_site,
                                    old_size)
                   : -1;
    }
    uint32_t stored = size >= LH_BIG_SIZE ? LH_BIG_SIZE : (uint32_t)size;
    /* One pass: walk the probe sequence as a lookup would; either the
       address is found (replace it) or the walk reaches the point where a
       lookup would stop, which is where Robin Hood inserts it. */
    size_t mask = t->capacity - 1;
    size_t slot = block_home(t, ptr);
    for (size_t dist = 0;; dist++, slot = (slot + 1) & mask) {
        lh_block *cur = &t->slots[slot];
        if (cur->ptr == ptr) {
            return blocks_replace(t, cur, site_id, size, old_site, old_size);
        }
        if (cur->ptr == 0 || probe_distance(t, cur->ptr, slot) < dist) {
            break;
        }
    }
    if (stored == LH_BIG_SIZE && big_remember(t, ptr, size) < 0) {
        return -1;
    }
    lh_block entry = {ptr, site_id, stored};
    blocks_place_from(t, entry, slot, (slot - block_home(t, ptr)) & mask);
    return 0;
}

/* ---- the nursery, in front of the main table -------------------------- */

static int main_pop(lh_block_table *t, uintptr_t ptr, uint32_t *site_id,
                    size_t *size);
static void main_remove_at(lh_block_table *t, lh_block *cur);

static inline lh_block *
nursery_slot(lh_block_table *t, uintptr_t ptr)
{
    size_t i = (size_t)(((uint64_t)ptr * 0x9E3779B97F4A7C15u)
                        >> (64 - LH_NURSERY_LOG2));
    return &t->nursery[i];
}

/* `ptr` is being recorded: it leaves the absent memo.  The slot is read
   first so that the common case (another address there) writes nothing.
   Only the reference tracer (3.13+) reads the memo: before 3.13 this
   costs nothing on every allocation. */
static inline void
absent_forget(lh_block_table *t, uintptr_t ptr)
{
#if PY_VERSION_HEX >= 0x030D0000
    _Atomic uintptr_t *slot = &t->absent[lh_blocks_absent_slot(ptr)];
    if (atomic_load_explicit(slot, memory_order_relaxed) == ptr) {
        atomic_store_explicit(slot, 0, memory_order_relaxed);
    }
#else
    (void)t;
    (void)ptr;
#endif
}

/* Take `ptr`'s record out of the nursery into *out, if it is there. */
static int
nursery_take(lh_block_table *t, uintptr_t ptr, lh_block *out)
{
    lh_block *e = nursery_slot(t, ptr);
    if (e->ptr != ptr || ptr == 0) {
        return 0;
    }
    *out = *e;
    e->ptr = 0;
    return 1;
}

static void
drop(lh_block_record *dropped, int *n, uintptr_t ptr, uint32_t site_id,
     size_t size)
{
    dropped[*n] = (lh_block_record){ptr, site_id, size};
    (*n)++;
}

/* Write the pending record (tables.h) to its home slot, if that is free:
   nearly always, while the main table is under half full.  A free home
   slot also means that the table holds no other record of the block (a
   lookup would stop there).  Returns 1 when nothing is pending any more. */
static inline int
pending_place_home(lh_block_table *t)
{
    if (t->pending.ptr == 0) {
        return 1;
    }
    lh_block *home = &t->slots[block_home(t, t->pending.ptr)];
    if (home->ptr != 0) {
        return 0;
    }
    *home = t->pending;
    t->used++;
    t->pending.ptr = 0;
    return 1;
}

/* Write the pending record to the main table, wherever it goes there; a
   stale record of the same address is dropped.  Returns -1 (and leaves
   it pending) when the main table has no room. */
static __attribute__((noinline)) int
pending_settle(lh_block_table *t, lh_block_record *dropped, int *n)
{
    lh_block *e = &t->pending;
    if (e->ptr == 0) {
        return 0;
    }
    uint32_t old_site;
    size_t old_size;
    int replaced = main_put(t, e->ptr, e->site_id, e->size, &old_site,
                            &old_size);
    if (replaced < 0) {
        return -1;
    }
    if (replaced) {
        drop(dropped, n, e->ptr, old_site, old_size);
    }
    e->ptr = 0;
    return 0;
}

/* Make the nursery's record `e` the pending one (there is none), and
   start fetching its home slot for when it is written there. */
static inline void
pending_set(lh_block_table *t, const lh_block *e)
{
    t->pending = *e;
    if (t->capacity != 0) {
        __builtin_prefetch(&t->slots[block_home(t, e->ptr)], 1, 3);
    }
}

/* Whether the pending slot holds `ptr`'s record. */
static inline int
pending_holds(const lh_block_table *t, uintptr_t ptr)
{
    return t->pending.ptr == ptr && ptr != 0;
}

/* Take `ptr`'s record out of the pending slot, if it is there. */
static inline int
pending_take(lh_block_table *t, uintptr_t ptr, uint32_t *site_id,
             size_t *size)
{
    if (!pending_holds(t, ptr)) {
        return 0;
    }
    *site_id = t->pending.site_id;
    *size = t->pending.size;
    t->pending.ptr = 0;
    return 1;
}

/* A block of 4 GiB or more (rare) goes straight to the main table, which
   keeps its size on the side; a record of the same address in the
   nursery is stale. */
static int
put_big(lh_block_table *t, uintptr_t ptr, uint32_t site_id, size_t size,
        lh_block_record *dropped, int *n)
{
    lh_block stale;
    uint32_t old_site;
    size_t old_size;
    int replaced = main_put(t, ptr, site_id, size, &old_site, &old_size);
    if (replaced < 0) {
        return -1;
    }
    if (replaced) {
        drop(dropped, n, ptr, old_site, old_size);
    }
    if (nursery_take(t, ptr, &stale)) {
        drop(dropped, n, ptr, stale.site_id, stale.size);
    }
    return 0;
}

int
lh_blocks_put(lh_block_table *t, uintptr_t ptr, uint32_t site_id,
              size_t size, lh_block_record *dropped, int *ndropped)
{
    *ndropped = 0;
    if (lh_blocks_put_young(t, ptr, site_id, size)) {
        return 0;
    }
    if (pending_settle(t, dropped, ndropped) < 0) {
        return -1;
    }
    absent_forget(t, ptr);
    if (size >= LH_BIG_SIZE) {
        return put_big(t, ptr, site_id, size, dropped, ndropped);
    }
    lh_block *e = nursery_slot(t, ptr);
    if (e->ptr == ptr) {
        /* Freed behind our back, and the address came back. */
        drop(dropped, ndropped, ptr, e->site_id, e->size);
    }
    else if (e->ptr != 0) {
        pending_set(t, e);
    }
    *e = (lh_block){ptr, site_id, (uint32_t)size};
    return 0;
}

int
lh_blocks_put_young(lh_block_table *t, uintptr_t ptr, uint32_t site_id,
                    size_t size)
{
    lh_block *e = nursery_slot(t, ptr);
    if (e->ptr != 0 || size >= LH_BIG_SIZE) {
        return 0;
    }
    absent_forget(t, ptr);
    *e = (lh_block){ptr, site_id, (uint32_t)size};
    return 1;
}

int
lh_blocks_put_evicting(lh_block_table *t, uintptr_t ptr, uint32_t site_id,
                       size_t size)
{
    lh_block *e = nursery_slot(t, ptr);
    if (e->ptr == ptr || e->ptr == 0 || size >= LH_BIG_SIZE
        || t->used + 2 > t->limit || !pending_place_home(t)) {
        /* A stale record, no block to move (the caller was to try the
           nursery first), a big block, the table must grow first, or the
           block pending must go elsewhere than its home slot. */
        return 0;
    }
    pending_set(t, e);
    absent_forget(t, ptr);
    *e = (lh_block){ptr, site_id, (uint32_t)size};
    return 1;
}

int
lh_blocks_pop_home(lh_block_table *t, uintptr_t ptr, uint32_t *site_id,
                   size_t *size)
{
    if (pending_take(t, ptr, site_id, size)) {
        return 1;
    }
    if (t->capacity == 0) {
        return 0;
    }
    size_t slot = block_home(t, ptr);
    lh_block *cur = &t->slots[slot];
    if (cur->ptr != ptr || cur->size == LH_BIG_SIZE) {
        return 0;
    }
    size_t after = (slot + 1) & (t->capacity - 1);
    const lh_block *next = &t->slots[after];
    if (next->ptr != 0 && block_home(t, next->ptr) != after) {
        return 0; /* displaced: it must be shifted back (main_pop) */
    }
    *site_id = cur->site_id;
    *size = cur->size;
    cur->ptr = 0;
    t->used--;
    return 1;
}

int
lh_blocks_replace(lh_block_table *t, uintptr_t ptr, uint32_t site_id,
                  size_t size, lh_block_record *dropped, int *ndropped)
{
    uint32_t old_site;
    size_t old_size;
    int stale = pending_take(t, ptr, &old_site, &old_size)
                || main_pop(t, ptr, &old_site, &old_size);
    int result = lh_blocks_put(t, ptr, site_id, size, dropped, ndropped);
    if (stale) {
        drop(dropped, ndropped, ptr, old_site, old_size);
    }
    return result;
}

size_t
lh_blocks_nslots(const lh_block_table *t)
{
    return t->capacity + (1u << LH_NURSERY_LOG2) + 1;
}

/* The main table's slots, then the nursery's, then the pending one. */
const lh_block *
lh_blocks_slot(const lh_block_table *t, size_t i)
{
    if (i < t->capacity) {
        return &t->slots[i];
    }
    i -= t->capacity;
    return i < (1u << LH_NURSERY_LOG2) ? &t->nursery[i] : &t->pending;
}

size_t
lh_blocks_count(const lh_block_table *t)
{
    /* The nursery is counted here rather than on every allocation and
       free: this runs once a snapshot or a get_stats(). */
    size_t young = t->pending.ptr != 0;
    for (size_t i = 0; i < (1u << LH_NURSERY_LOG2); i++) {
        young += t->nursery[i].ptr != 0;
    }
    return t->used + young;
}

/* `ptr`'s record, `e` being its nursery slot: the nursery's comes first
   (it is the newest), then the pending one, then the main table's; NULL,
   with `ptr` put in the absent memo, when there is none. */
static inline lh_block *
find_record(lh_block_table *t, uintptr_t ptr, lh_block *e)
{
    if (e->ptr == ptr && ptr != 0) {
        return e;
    }
    if (pending_holds(t, ptr)) {
        return &t->pending;
    }
    lh_block *cur = blocks_find(t, ptr);
    if (cur == NULL) {
        atomic_store_explicit(&t->absent[lh_blocks_absent_slot(ptr)], ptr,
                              memory_order_relaxed);
    }
    return cur;
}

lh_block *
lh_blocks_lookup(lh_block_table *t, uintptr_t ptr)
{
    return find_record(t, ptr, nursery_slot(t, ptr));
}

/* lh_blocks_lookup(), for the block of an object reused from a free
   list: a record found in the pending slot or the main table moves to
   the block's nursery slot.  Such a block is not freed when its object
   dies: the object goes back to its free list, and in a loop it comes
   back at the next iteration and is looked up again.  In W1, 14.5 of the
   20 lookups an iteration found their record in the main table, a probe
   at a random place of a table too big for the caches; moved, nearly
   all of them are found in the nursery (callgrind, 3.14 and 3.15: some
   320 instructions an iteration fewer).  A block that holds the nursery
   slot goes where an allocation's eviction would send it
   (lh_blocks_put_evicting): to the pending slot, the record pending
   before to its free home slot; where that cannot be done at once, the
   record stays where it is. */
lh_block *
lh_blocks_lookup_reused(lh_block_table *t, uintptr_t ptr)
{
    lh_block *e = nursery_slot(t, ptr);
    lh_block *found = find_record(t, ptr, e);
    if (found == NULL || found == e || found->size == LH_BIG_SIZE) {
        return found;
    }
    if (found == &t->pending) {
        if (e->ptr != 0) {
            return found;
        }
        *e = t->pending;
        t->pending.ptr = 0;
        return e;
    }
    lh_block record = *found;
    if (e->ptr != 0) {
        if (t->used + 2 > t->limit || !pending_place_home(t)) {
            return found;
        }
        /* `found` is still `ptr`'s record: the record pending went to a
           free slot, and moved no other. */
        pending_set(t, e);
    }
    main_remove_at(t, found);
    *e = record;
    return e;
}

int
lh_blocks_get(lh_block_table *t, uintptr_t ptr, uint32_t *site_id,
              size_t *size)
{
    const lh_block *cur = lh_blocks_lookup(t, ptr);
    if (cur == NULL) {
        return 0;
    }
    *site_id = cur->site_id;
    *size = lh_blocks_size_of(t, cur);
    return 1;
}

int
lh_blocks_pop_young(lh_block_table *t, uintptr_t ptr, uint32_t *site_id,
                    size_t *size)
{
    lh_block young;
    if (!nursery_take(t, ptr, &young)) {
        return 0;
    }
    *site_id = young.site_id;
    *size = young.size;
    return 1;
}

int
lh_blocks_pop(lh_block_table *t, uintptr_t ptr, uint32_t *site_id,
              size_t *size)
{
    if (lh_blocks_pop_young(t, ptr, site_id, size)
        || pending_take(t, ptr, site_id, size)) {
        return 1;
    }
    return main_pop(t, ptr, site_id, size);
}

/* Empty the main table's slot `cur`.  Backward shift: pull the following
   displaced entries one slot closer to home, so no tombstones are
   needed. */
static void
main_remove_at(lh_block_table *t, lh_block *cur)
{
    size_t mask = t->capacity - 1;
    size_t slot = (size_t)(cur - t->slots);
    for (;;) {
        size_t next = (slot + 1) & mask;
        lh_block *n = &t->slots[next];
        if (n->ptr == 0 || probe_distance(t, n->ptr, next) == 0) {
            break;
        }
        t->slots[slot] = *n;
        slot = next;
    }
    t->slots[slot].ptr = 0;
    t->used--;
}

static __attribute__((noinline)) int
main_pop(lh_block_table *t, uintptr_t ptr, uint32_t *site_id, size_t *size)
{
    lh_block *cur = blocks_find(t, ptr);
    if (cur == NULL) {
        return 0;
    }
    *site_id = cur->site_id;
    *size = lh_blocks_size_of(t, cur);
    if (cur->size == LH_BIG_SIZE) {
        big_forget(t, ptr);
    }
    main_remove_at(t, cur);
    return 1;
}

void
lh_blocks_clear(lh_block_table *t)
{
    lh_big_size *big, *tmp;
    HASH_ITER(hh, t->big, big, tmp) {
        HASH_DEL(t->big, big);
        lh_mem_free(big, sizeof(*big));
    }
    lh_mem_free(t->slots, t->capacity * sizeof(lh_block));
    memset(t, 0, sizeof(*t));
}

size_t
lh_blocks_memory(const lh_block_table *t)
{
    return t->capacity * sizeof(lh_block)
           + HASH_COUNT(t->big) * sizeof(lh_big_size);
}
