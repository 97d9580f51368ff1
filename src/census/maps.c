/* maps.c - hash tables and growable arrays (see maps.h). */
#include "maps.h"

#include <stdlib.h>
#include <string.h>

static size_t
capacity_for(size_t expected)
{
    size_t capacity = 64;
    while (capacity < expected * 2) {
        capacity *= 2;
    }
    return capacity;
}

static size_t
addrmap_home(const cs_addrmap *map, uint64_t key)
{
    return (size_t)(cs_hash_addr(key) >> 20) & map->mask;
}

int
cs_addrmap_init(cs_addrmap *map, size_t expected)
{
    size_t capacity = capacity_for(expected);
    map->slots = calloc(capacity, sizeof(cs_addrmap_slot));
    if (map->slots == NULL) {
        return -1;
    }
    map->mask = capacity - 1;
    map->used = 0;
    return 0;
}

void
cs_addrmap_free(cs_addrmap *map)
{
    free(map->slots);
    map->slots = NULL;
    map->mask = 0;
    map->used = 0;
}

uint32_t
cs_addrmap_get(const cs_addrmap *map, uint64_t key)
{
    if (map->slots == NULL || key == 0) {
        return CS_NONE;
    }
    size_t i = addrmap_home(map, key);
    while (map->slots[i].key != 0) {
        if (map->slots[i].key == key) {
            return map->slots[i].value;
        }
        i = (i + 1) & map->mask;
    }
    return CS_NONE;
}

static void
addrmap_insert(cs_addrmap *map, uint64_t key, uint32_t value)
{
    size_t i = addrmap_home(map, key);
    while (map->slots[i].key != 0 && map->slots[i].key != key) {
        i = (i + 1) & map->mask;
    }
    if (map->slots[i].key == 0) {
        map->used++;
    }
    map->slots[i].key = key;
    map->slots[i].value = value;
}

/* Doubles the table.  The old slots are reinserted, not copied: their
   positions depend on the mask. */
static int
addrmap_grow(cs_addrmap *map)
{
    cs_addrmap old = *map;
    size_t capacity = (old.mask + 1) * 2;
    map->slots = calloc(capacity, sizeof(cs_addrmap_slot));
    if (map->slots == NULL) {
        *map = old;
        return -1;
    }
    map->mask = capacity - 1;
    map->used = 0;
    for (size_t i = 0; i <= old.mask; i++) {
        if (old.slots[i].key != 0) {
            addrmap_insert(map, old.slots[i].key, old.slots[i].value);
        }
    }
    free(old.slots);
    return 0;
}

int
cs_addrmap_put(cs_addrmap *map, uint64_t key, uint32_t value)
{
    if (key == 0) {
        return -1;
    }
    if ((map->used + 1) * 2 > map->mask + 1 && addrmap_grow(map) < 0) {
        return -1;
    }
    addrmap_insert(map, key, value);
    return 0;
}

int
cs_idset_build(cs_idset *set, cs_addrs addrs, uint32_t count)
{
    size_t capacity = capacity_for(count);
    set->slots = calloc(capacity, sizeof(uint32_t));
    if (set->slots == NULL) {
        return -1;
    }
    set->mask = capacity - 1;
    for (uint32_t id = 0; id < count; id++) {
        uint64_t addr = cs_addrs_at(addrs, id);
        size_t i = (size_t)(cs_hash_addr(addr) >> 20) & set->mask;
        int duplicate = 0;
        while (set->slots[i] != 0) {
            if (cs_addrs_at(addrs, set->slots[i] - 1) == addr) {
                duplicate = 1;
                break;
            }
            i = (i + 1) & set->mask;
        }
        if (!duplicate) {
            set->slots[i] = id + 1;
        }
    }
    return 0;
}

void
cs_idset_free(cs_idset *set)
{
    free(set->slots);
    set->slots = NULL;
    set->mask = 0;
}

int
cs_grow(void **items, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) {
        return 0;
    }
    size_t capacity = *cap < 16 ? 16 : *cap;
    while (capacity < need) {
        if (capacity > SIZE_MAX / 2 / size) {
            return -1;
        }
        capacity *= 2;
    }
    void *grown = realloc(*items, capacity * size);
    if (grown == NULL) {
        return -1;
    }
    *items = grown;
    *cap = capacity;
    return 0;
}
