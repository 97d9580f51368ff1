/* types.h - the type table.
 *
 * Every type the census meets gets one cs_type, found by address through
 * an addrmap.  A type is registered only after its object has been read
 * and checked (its own type is a metatype, it is ready, its sizes are
 * sane), so a garbage pointer is refused here rather than trusted later.
 *
 * The table holds pointers to separately allocated entries: callers keep
 * a cs_type * across calls that register more types, which would move
 * the entries of a flat array.
 */
#ifndef PYLEAKHUNT_CENSUS_TYPES_H
#define PYLEAKHUNT_CENSUS_TYPES_H

#include "scanner.h"

/* The type at `addr`, registered on first sight; NULL if `addr` is not a
   readable, ready type object, or if out of memory (then
   s->out_of_memory is set). */
cs_type *cs_type_at(cs_scanner *s, uint64_t addr);

/* The type at `addr` if already registered, else NULL.  The hot path of
   the heap scan. */
static inline cs_type *
cs_type_known(cs_scanner *s, uint64_t addr)
{
    uint32_t index = cs_addrmap_get(&s->type_index, addr);
    return index == CS_NONE ? NULL : s->types[index];
}

/* The registered type of the object at `obj`, or NULL. */
static inline cs_type *
cs_type_of(cs_scanner *s, uint64_t obj)
{
    return cs_type_known(s, cs_word(&s->image, obj + CS_OB_TYPE));
}

/* The index of `t` in s->types. */
uint32_t cs_type_index(cs_scanner *s, const cs_type *t);

/* Bytes in front of an object of type `t`: the gc head, and the managed
   dict/weakref pre-header (3.11+). */
uint64_t cs_type_preheader(const cs_scanner *s, const cs_type *t);

static inline int
cs_type_is_gc(const cs_type *t)
{
    return (t->flags & CS_TPFLAGS_HAVE_GC) != 0;
}

static inline int
cs_type_is_heap(const cs_type *t)
{
    return (t->flags & CS_TPFLAGS_HEAPTYPE) != 0;
}

void cs_types_free(cs_scanner *s);

#endif
