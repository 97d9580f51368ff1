/* census.c - the three passes that find objects (see census.h). */
#include "census.h"

#include <stdarg.h>
#include <stdio.h>

#include "objects.h"
#include "types.h"

#define MAX_INTERPRETERS 256
/* A live object's reference count is small, or one of the immortal values
   of 3.12+ (0x3fffffff and thereabouts).  A freed pymalloc block holds a
   pointer there (the free list), which is far bigger. */
#define MAX_REFCNT (1ULL << 40)
/* 3.14+: the ob_flags CPython defines fit in a byte (_Py_IMMORTAL_FLAGS,
   _Py_STATICALLY_ALLOCATED_FLAG...). */
#define MAX_OB_FLAGS 0xffu

/* Does the first word of an object read as a live reference count?  Sets
   *immortal for the counts that say so (3.12+: negative as a 32-bit
   number). */
static int
plausible_refcnt(const cs_layout *lay, uint64_t word, int *immortal)
{
    *immortal = 0;
    if (!cs_refcnt_is_32bit(lay)) {
        return word != 0 && word <= MAX_REFCNT;
    }
    uint32_t count = (uint32_t)word;
    uint64_t high = word >> 32;
    if (cs_header_has_flags(lay)) {
        /* ob_overflow (the low 16 bits of `high`) stays 0 in the GIL
           build; ob_flags are a few low bits. */
        if ((high & 0xffff) != 0 || (high >> 16) > MAX_OB_FLAGS) {
            return 0;
        }
    }
    else if (high != 0) {
        return 0;
    }
    *immortal = (int32_t)count < 0;
    return count != 0;
}

int
cs_fail(cs_scanner *s, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(s->error, sizeof(s->error), format, args);
    va_end(args);
    return -1;
}

uint64_t
cs_foreach_interpreter(cs_scanner *s, cs_interp_fn fn, void *ctx)
{
    uint64_t interp
        = cs_word(&s->image, s->runtime + s->lay->runtime_interp_head);
    uint64_t count = 0;
    while (interp != 0 && count < MAX_INTERPRETERS) {
        count++;
        if (fn(s, interp, ctx) != 0) {
            break;
        }
        interp = cs_word(&s->image, interp + s->lay->interp_next);
    }
    return count;
}

static void
add_node(cs_scanner *s, uint64_t addr, const cs_type *t, uint64_t size)
{
    if (cs_grow((void **)&s->nodes, &s->nodes_cap, s->nnodes + 1,
                sizeof(cs_node))
            < 0
        || s->nnodes >= CS_NONE - 1) {
        s->out_of_memory = 1;
        return;
    }
    cs_node *node = &s->nodes[s->nnodes++];
    node->addr = addr;
    node->type = cs_type_index(s, t);
    node->size = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
}

/* ---- pass 1: static types ----------------------------------------------- */

static void
prescan_segment(cs_scanner *s, const cs_segment *seg)
{
    uint64_t start = (seg->start + 7) & ~(uint64_t)7;
    for (uint64_t addr = start; addr + 16 <= seg->end; addr += 8) {
        uint64_t type;
        memcpy(&type, seg->data + (addr - seg->start) + CS_OB_TYPE, 8);
        if (type != s->type_type || cs_type_known(s, addr) != NULL) {
            continue;
        }
        if (cs_type_at(s, addr) != NULL) {
            s->stats.static_types++;
        }
    }
}

static void
prescan_static_types(cs_scanner *s)
{
    for (size_t i = 0; i < s->image.nsegs; i++) {
        const cs_segment *seg = &s->image.segs[i];
        if ((seg->flags & CS_SEG_FILE) && (seg->flags & CS_SEG_WRITABLE)) {
            prescan_segment(s, seg);
        }
    }
}

/* ---- pass 2: the gc lists -------------------------------------------------
 */

static void
count_gc_object(cs_scanner *s, uint64_t obj)
{
    cs_type *t = cs_type_at(s, cs_word(&s->image, obj + CS_OB_TYPE));
    uint64_t total;
    uint64_t body;
    if (t == NULL) {
        s->stats.bad_types++;
        return;
    }
    if (cs_object_size(s, obj, t, 0, &total, &body) < 0
        || total > s->image_bytes) {
        /* Malformed (or caught mid-update in a live read): count it at its
           fixed size rather than trust its counts. */
        total = cs_type_preheader(s, t) + (uint64_t)t->basicsize;
    }
    int immortal;
    plausible_refcnt(s->lay, cs_word(&s->image, obj + CS_OB_REFCNT),
                     &immortal);
    t->count_gc++;
    t->bytes_gc += total;
    t->count_immortal += (uint64_t)immortal;
    s->stats.immortal += (uint64_t)immortal;
    s->stats.gc_objects++;
    add_node(s, obj, t, total);
    if (t->kind == CS_KIND_TYPE) {
        cs_type_at(s, obj); /* a class: register it before the scan */
    }
}

/* Walks one circular list of PyGC_Head.  The low two bits of _gc_prev
   are flags.  Bit 0 of _gc_next is a mark that the generational
   collector sets only inside a collection, but the incremental one of
   3.14.0-3.14.4 keeps there for good: which old space the object is in.
   Either way it is not part of the address.  Every link is checked both
   ways: a list that breaks (bad layout, or a live process read without
   stopping it) ends the walk of that list, never the census. */
static void
walk_list(cs_scanner *s, uint64_t head, uint64_t max_steps)
{
    uint64_t prev = head;
    uint64_t next = cs_word(&s->image, head);
    uint64_t gc = next & ~(uint64_t)1;
    for (uint64_t steps = 0; gc != head; steps++) {
        if (gc == 0 || steps > max_steps
            || cs_image_ptr(&s->image, gc, CS_GC_HEAD_SIZE + CS_OBJECT_SIZE)
                   == NULL) {
            s->stats.broken_lists++;
            return;
        }
        if ((cs_word(&s->image, gc + 8) & ~(uint64_t)3) != prev) {
            s->stats.bad_links++;
        }
        if ((next & 1) && !s->target.incremental_gc) {
            s->stats.marked_links++;
        }
        count_gc_object(s, gc + CS_GC_HEAD_SIZE);
        prev = gc;
        next = cs_word(&s->image, gc);
        gc = next & ~(uint64_t)1;
    }
}

static int
walk_interpreter(cs_scanner *s, uint64_t interp, void *ctx)
{
    const cs_layout *lay = s->lay;
    uint64_t max_steps = *(uint64_t *)ctx;
    uint64_t gc = interp + (uint64_t)lay->interp_gc;
    if (cs_u32(&s->image, gc + (uint64_t)lay->gc_collecting) != 0) {
        s->target.collecting = 1;
    }
    /* The generational collector's three generations, or the incremental
       one's young and two old spaces: three lists in the same place. */
    uint64_t heads[4];
    for (int i = 0; i < 3; i++) {
        heads[i] = gc + (uint64_t)lay->gc_generations
                   + (uint64_t)i * (uint64_t)lay->generation_size;
    }
    heads[3] = gc + (uint64_t)lay->gc_permanent;
    if (s->target.gc_heads[0] == 0) {
        memcpy(s->target.gc_heads, heads, sizeof(heads));
    }
    for (int i = 0; i < 4; i++) {
        walk_list(s, heads[i], max_steps);
    }
    return 0;
}

static uint64_t
image_bytes(const cs_image *img)
{
    uint64_t total = 0;
    for (size_t i = 0; i < img->nsegs; i++) {
        total += img->segs[i].end - img->segs[i].start;
    }
    return total;
}

static int
walk_gc_lists(cs_scanner *s)
{
    uint64_t max_steps = s->image_bytes / 32 + 1;
    s->stats.interpreters
        = cs_foreach_interpreter(s, walk_interpreter, &max_steps);
    if (s->stats.interpreters == 0) {
        return cs_fail(s, "no interpreter in _PyRuntime (Python had not "
                          "started, or had already finished)");
    }
    if (s->stats.gc_objects == 0
        || s->stats.bad_types > s->stats.gc_objects / 4) {
        return cs_fail(s,
                       "the gc lists do not hold Python objects: this "
                       "is not the layout of CPython 3.%d, or the "
                       "memory is damaged",
                       s->lay->minor);
    }
    return 0;
}

/* ---- pass 3: the scan --------------------------------------------------- */

/* Counts the object at `addr` if it is one the walk did not count, and
   returns the bytes the scan may skip: the object's body. */
static uint64_t
scan_object(cs_scanner *s, uint64_t addr, cs_type *t, int immortal)
{
    uint64_t total;
    uint64_t body;
    if (t->kind == CS_KIND_TYPE) {
        return 0; /* classes are tracked; static types are not objects
                     anyone allocated */
    }
    if (cs_object_size(s, addr, t, 1, &total, &body) < 0) {
        return 0;
    }
    if (cs_type_is_gc(t)) {
        /* The collector untracks only tuples and dicts (of atomic
           values); any other object of a gc type that is not on its
           lists is one being built or freed, or not an object. */
        if (t->kind != CS_KIND_TUPLE && t->kind != CS_KIND_DICT) {
            return 0;
        }
        uint64_t gc_next;
        if (cs_read_u64(&s->image, addr - CS_GC_HEAD_SIZE, &gc_next) < 0) {
            return 0;
        }
        if (gc_next != 0) {
            return body; /* tracked: counted by the walk */
        }
    }
    t->count_scan++;
    t->bytes_scan += total;
    t->count_immortal += (uint64_t)immortal;
    s->stats.immortal += (uint64_t)immortal;
    s->stats.scan_objects++;
    add_node(s, addr, t, total);
    return body;
}

static void
scan_segment(cs_scanner *s, const cs_segment *seg)
{
    /* Heap objects are 16-byte aligned (pymalloc and malloc); static ones
       only 8. */
    uint64_t step = (seg->flags & CS_SEG_FILE) ? 8 : 16;
    uint64_t addr = (seg->start + step - 1) & ~(step - 1);
    for (; addr + 16 <= seg->end; addr += step) {
        const uint8_t *p = seg->data + (addr - seg->start);
        uint64_t type;
        uint64_t refcnt;
        memcpy(&type, p + CS_OB_TYPE, 8);
        if (type == 0 || (type & 7) != 0) {
            continue;
        }
        cs_type *t = cs_type_known(s, type);
        if (t == NULL) {
            continue;
        }
        memcpy(&refcnt, p + CS_OB_REFCNT, 8);
        int immortal;
        if (!plausible_refcnt(s->lay, refcnt, &immortal)) {
            continue;
        }
        uint64_t skip = scan_object(s, addr, t, immortal);
        if (skip > step) {
            addr += ((skip + step - 1) & ~(step - 1)) - step;
        }
    }
}

static void
scan_memory(cs_scanner *s)
{
    for (size_t i = 0; i < s->image.nsegs; i++) {
        const cs_segment *seg = &s->image.segs[i];
        if (seg->flags & CS_SEG_WRITABLE) {
            s->stats.scanned_bytes += seg->end - seg->start;
            scan_segment(s, seg);
        }
    }
}

/* 3.15+: a bytearray keeps its data in a bytes object; the one it alone
   holds is part of it (its size counts it), not a bytes of its own. */
static int
drop_owned_bytes(cs_scanner *s)
{
    cs_addrmap owned;
    if (s->lay->bytearray_bytes_object < 0) {
        return 0;
    }
    if (cs_addrmap_init(&owned, 64) < 0) {
        return -1;
    }
    for (size_t i = 0; i < s->nnodes; i++) {
        cs_node *node = &s->nodes[i];
        uint64_t bytes = s->types[node->type]->kind == CS_KIND_BYTEARRAY
                             ? cs_bytearray_owned_bytes(s, node->addr)
                             : 0;
        if (bytes != 0 && cs_addrmap_put(&owned, bytes, 1) < 0) {
            cs_addrmap_free(&owned);
            return -1;
        }
    }
    size_t kept = 0;
    for (size_t i = 0; i < s->nnodes; i++) {
        cs_node node = s->nodes[i];
        cs_type *t = s->types[node.type];
        if (t->kind == CS_KIND_BYTES && t->count_scan > 0
            && cs_addrmap_get(&owned, node.addr) != CS_NONE) {
            t->count_scan--;
            /* node.size saturates at 4 GiB: never take more than was
               added */
            t->bytes_scan -= node.size < t->bytes_scan ? node.size
                                                       : t->bytes_scan;
            s->stats.scan_objects--;
            continue;
        }
        s->nodes[kept++] = node;
    }
    s->nnodes = kept;
    cs_addrmap_free(&owned);
    return 0;
}

int
cs_census_run(cs_scanner *s)
{
    if (s->census_done) {
        return 0;
    }
    s->image_bytes = image_bytes(&s->image);
    prescan_static_types(s);
    if (walk_gc_lists(s) < 0) {
        return -1;
    }
    scan_memory(s);
    if (drop_owned_bytes(s) < 0) {
        s->out_of_memory = 1;
    }
    if (s->out_of_memory) {
        return cs_fail(s, "out of memory");
    }
    s->census_done = 1;
    return 0;
}
