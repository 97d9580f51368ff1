/* maps.h - the two hash tables of the census, and a growable array.
 *
 * cs_addrmap maps a non-zero 64-bit key (an address) to a 32-bit value:
 * the type table and the holder groups use it.  Open addressing with
 * linear probing, at most half full, 16 bytes a slot.
 *
 * cs_idset is the index of the objects: it stores only 32-bit object
 * numbers, and finds an address by comparing with the object array the
 * caller passes in.  With millions of objects that is 8 bytes an object
 * instead of 32, for one more memory access a lookup.
 *
 * Addresses of objects are 16-byte aligned, so the hash drops the low
 * four bits before a Fibonacci multiply.
 */
#ifndef PYLEAKHUNT_CENSUS_MAPS_H
#define PYLEAKHUNT_CENSUS_MAPS_H

#include <stddef.h>
#include <stdint.h>

#define CS_NONE UINT32_MAX

static inline uint64_t
cs_hash_addr(uint64_t key)
{
    return ((key >> 4) ^ (key >> 32)) * 0x9E3779B97F4A7C15ULL;
}

/* ---- cs_addrmap: address -> uint32 -------------------------------------- */

typedef struct {
    uint64_t key; /* 0: empty */
    uint32_t value;
} cs_addrmap_slot;

typedef struct {
    cs_addrmap_slot *slots;
    size_t mask; /* capacity - 1; capacity is a power of two */
    size_t used;
} cs_addrmap;

int cs_addrmap_init(cs_addrmap *map, size_t expected);
void cs_addrmap_free(cs_addrmap *map);
/* The value of `key`, or CS_NONE. */
uint32_t cs_addrmap_get(const cs_addrmap *map, uint64_t key);
/* Sets `key` to `value`.  Returns 0, or -1 if out of memory. */
int cs_addrmap_put(cs_addrmap *map, uint64_t key, uint32_t value);

/* ---- cs_idset: address -> object number, keys stored elsewhere ---------- */

typedef struct {
    uint32_t *slots; /* object number + 1; 0: empty */
    size_t mask;
} cs_idset;

/* `addrs` is read through a stride: the address of object i is the
   uint64_t at (const char *)base + i * stride. */
typedef struct {
    const char *base;
    size_t stride;
} cs_addrs;

static inline uint64_t
cs_addrs_at(cs_addrs addrs, uint32_t i)
{
    return *(const uint64_t *)(const void *)(addrs.base
                                             + (size_t)i * addrs.stride);
}

/* Builds the index of `count` objects.  Returns 0, or -1 if out of
   memory.  Duplicate addresses keep the first object. */
int cs_idset_build(cs_idset *set, cs_addrs addrs, uint32_t count);
void cs_idset_free(cs_idset *set);

/* The number of the object at `addr`, or CS_NONE. */
static inline uint32_t
cs_idset_get(const cs_idset *set, cs_addrs addrs, uint64_t addr)
{
    if (set->slots == NULL || addr == 0) {
        return CS_NONE;
    }
    size_t i = (size_t)(cs_hash_addr(addr) >> 20) & set->mask;
    for (;;) {
        uint32_t slot = set->slots[i];
        if (slot == 0) {
            return CS_NONE;
        }
        if (cs_addrs_at(addrs, slot - 1) == addr) {
            return slot - 1;
        }
        i = (i + 1) & set->mask;
    }
}

/* ---- growable arrays ---------------------------------------------------- */

/* Makes room for at least `need` elements of `size` bytes in *items,
   whose capacity is *cap.  Returns 0, or -1 if out of memory (the array
   is then unchanged). */
int cs_grow(void **items, size_t *cap, size_t need, size_t size);

#endif
