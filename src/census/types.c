/* types.c - the type table (see types.h). */
#include "types.h"

#include <stdlib.h>
#include <string.h>

/* Limits that no real type reaches; beyond them the "type" is garbage. */
#define MAX_BASICSIZE (1LL << 24)
#define MAX_ITEMSIZE (1LL << 16)
#define MAX_BASE_DEPTH 64

/* Is `meta` a metatype: type itself, or a class whose instances are
   types (ABCMeta, EnumType...)? */
static int
is_metatype(cs_scanner *s, uint64_t meta)
{
    if (meta == 0) {
        return 0;
    }
    if (meta == s->type_type) {
        return 1;
    }
    uint64_t flags;
    if (cs_read_u64(&s->image, meta + s->lay->type_flags, &flags) < 0) {
        return 0;
    }
    return (flags & CS_TPFLAGS_TYPE_SUBCLASS) != 0;
}

/* Reads the fields of the type object at `addr` into `t`.  Returns 0,
   or -1 if it is not a type we can trust. */
static int
read_type(cs_scanner *s, uint64_t addr, cs_type *t)
{
    const cs_layout *lay = s->lay;
    cs_image *img = &s->image;
    if ((addr & 7) != 0 || cs_image_ptr(img, addr, lay->type_size) == NULL) {
        return -1;
    }
    if (!is_metatype(s, cs_word(img, addr + CS_OB_TYPE))) {
        return -1;
    }
    t->addr = addr;
    t->flags = cs_word(img, addr + lay->type_flags);
    t->basicsize = cs_sword(img, addr + lay->type_basicsize);
    t->itemsize = cs_sword(img, addr + lay->type_itemsize);
    t->dictoffset = cs_sword(img, addr + lay->type_dictoffset);
    t->weaklistoffset = cs_sword(img, addr + lay->type_weaklistoffset);
    t->dict = cs_word(img, addr + lay->type_dict);
    if ((t->flags & CS_TPFLAGS_READY) == 0 || t->basicsize < CS_OBJECT_SIZE
        || t->basicsize > MAX_BASICSIZE || t->itemsize < 0
        || t->itemsize > MAX_ITEMSIZE) {
        return -1;
    }
    if ((t->flags & CS_TPFLAGS_HEAPTYPE)
        && cs_image_ptr(img, addr, lay->heap_type_size) == NULL) {
        return -1;
    }
    return 0;
}

/* The kind the type at `addr` has by itself: from the symbols (its
   address), or by name for the one type without a symbol we read. */
static uint32_t
own_kind(cs_scanner *s, uint64_t addr)
{
    uint32_t kind = cs_addrmap_get(&s->known_kinds, addr);
    if (kind != CS_NONE) {
        return kind;
    }
    uint64_t name = cs_word(&s->image, addr + s->lay->type_name);
    const char *text = name == 0 ? NULL : cs_image_cstr(&s->image, name, 64);
    if (text != NULL && strcmp(text, "collections.deque") == 0) {
        return CS_KIND_DEQUE;
    }
    return CS_NONE;
}

/* The kind of `t`: that of the nearest base whose address is a known
   static type.  The subclass flags of tp_flags settle the cases where
   the chain is unreadable. */
static void
resolve_kind(cs_scanner *s, cs_type *t)
{
    uint64_t current = t->addr;
    t->kind = CS_KIND_OTHER;
    t->base_basicsize = CS_OBJECT_SIZE;
    for (int depth = 0; depth < MAX_BASE_DEPTH && current != 0; depth++) {
        uint32_t kind = own_kind(s, current);
        if (kind != CS_NONE) {
            t->kind = (cs_kind)kind;
            t->base_basicsize
                = cs_sword(&s->image, current + s->lay->type_basicsize);
            break;
        }
        current = cs_word(&s->image, current + s->lay->type_base);
    }
    if (t->flags & CS_TPFLAGS_TYPE_SUBCLASS) {
        t->kind = CS_KIND_TYPE;
    }
    else if ((t->flags & CS_TPFLAGS_DICT_SUBCLASS)
             && t->kind != CS_KIND_DICT) {
        t->kind = CS_KIND_DICT;
        t->base_basicsize = s->lay->dict_size;
    }
    if (t->base_basicsize < CS_OBJECT_SIZE
        || t->base_basicsize > t->basicsize) {
        t->base_basicsize = t->basicsize;
    }
}

static int
add_type(cs_scanner *s, cs_type *t)
{
    if (cs_grow((void **)&s->types, &s->types_cap, s->ntypes + 1,
                sizeof(cs_type *))
            < 0
        || cs_addrmap_put(&s->type_index, t->addr, (uint32_t)s->ntypes) < 0) {
        return -1;
    }
    s->types[s->ntypes++] = t;
    return 0;
}

cs_type *
cs_type_at(cs_scanner *s, uint64_t addr)
{
    cs_type *known = cs_type_known(s, addr);
    if (known != NULL) {
        return known;
    }
    cs_type candidate = {0};
    if (addr == 0 || read_type(s, addr, &candidate) < 0) {
        return NULL;
    }
    resolve_kind(s, &candidate);
    cs_type *t = malloc(sizeof(cs_type));
    if (t == NULL) {
        s->out_of_memory = 1;
        return NULL;
    }
    *t = candidate;
    if (add_type(s, t) < 0) {
        free(t);
        s->out_of_memory = 1;
        return NULL;
    }
    return t;
}

uint32_t
cs_type_index(cs_scanner *s, const cs_type *t)
{
    return cs_addrmap_get(&s->type_index, t->addr);
}

uint64_t
cs_type_preheader(const cs_scanner *s, const cs_type *t)
{
    uint64_t bytes = cs_type_is_gc(t) ? CS_GC_HEAD_SIZE : 0;
    if (t->flags & cs_preheader_flags(s->lay)) {
        bytes += CS_PREHEADER_SIZE;
    }
    return bytes;
}

void
cs_types_free(cs_scanner *s)
{
    for (size_t i = 0; i < s->ntypes; i++) {
        free(s->types[i]->slots);
        free(s->types[i]);
    }
    free(s->types);
    s->types = NULL;
    s->ntypes = 0;
    s->types_cap = 0;
    cs_addrmap_free(&s->type_index);
}
