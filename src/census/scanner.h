/* scanner.h - the state of one census: cs_scanner.
 *
 * Everything the census knows about one memory image lives in one
 * cs_scanner, owned by one Python object (module.c); there is no other
 * state.  The layers, each in its own file, in the order data flows:
 *
 *   image.c    bounds-checked reads of the target's memory
 *   layout.c   CPython's struct layouts, per minor version
 *   debugoffsets.c  the target's own offsets (_Py_DebugOffsets, 3.13+)
 *   types.c    the type table: every type met, its kind, name, counts
 *   objects.c  one object: its size, its references (with labels)
 *   census.c   finding objects: the gc lists, then a scan of the heap
 *   graph.c    who holds what: paths from named roots, referrers
 *   module.c   the Python bindings
 */
#ifndef PYLEAKHUNT_CENSUS_SCANNER_H
#define PYLEAKHUNT_CENSUS_SCANNER_H

#include <stddef.h>
#include <stdint.h>

#include "image.h"
#include "layout.h"
#include "maps.h"

/* What the census knows how to read.  A heap type has the kind of its
   nearest static base (class Foo(dict) is a dict, with instance extras);
   CS_KIND_OTHER objects are read conservatively (see objects.c). */
typedef enum {
    CS_KIND_OTHER = 0,
    CS_KIND_OBJECT, /* object itself: instances of plain classes */
    CS_KIND_TYPE,
    CS_KIND_LIST,
    CS_KIND_TUPLE,
    CS_KIND_DICT,
    CS_KIND_SET, /* set and frozenset */
    CS_KIND_MODULE,
    CS_KIND_FUNCTION,
    CS_KIND_CELL,
    CS_KIND_METHOD,
    CS_KIND_CODE,
    CS_KIND_WEAKREF, /* holds nothing: a weak reference keeps no one */
    CS_KIND_STR,
    CS_KIND_BYTES,
    CS_KIND_INT,
    CS_KIND_FLOAT,
    CS_KIND_BYTEARRAY,
    CS_KIND_MEMBER_DESCR,
    CS_KIND_DEQUE, /* collections.deque, known by name: no symbol */
    CS_KIND_COUNT
} cs_kind;

/* A __slots__ member of a class: where its reference is, and its name
   (the address of a C string in the target). */
typedef struct {
    int64_t offset;
    uint64_t name;
} cs_slot;

typedef struct {
    uint64_t addr;
    uint64_t flags; /* tp_flags */
    int64_t basicsize;
    int64_t itemsize;
    int64_t dictoffset;
    int64_t weaklistoffset;
    uint64_t dict; /* tp_dict */
    cs_kind kind;
    /* Where the heap type's own fields start: the basicsize of the
       static base that gave the kind. */
    int64_t base_basicsize;
    /* Counted while walking the gc lists, and by the scan. */
    uint64_t count_gc;
    uint64_t bytes_gc;
    uint64_t count_scan;
    uint64_t bytes_scan;
    uint64_t count_immortal; /* of those counted, immortal (3.12+) */
    /* __slots__ of the class and its heap bases, read on first use. */
    cs_slot *slots;
    size_t nslots;
    size_t slots_cap;
    int slots_read;
} cs_type;

/* One object found by the census. */
typedef struct {
    uint64_t addr;
    uint32_t type; /* index in cs_scanner.types */
    uint32_t size; /* bytes, saturated at UINT32_MAX */
} cs_node;

typedef struct {
    uint64_t interpreters;
    uint64_t gc_objects;    /* found on the gc lists */
    uint64_t scan_objects;  /* found by the scan */
    uint64_t scanned_bytes; /* writable memory scanned */
    uint64_t broken_lists;  /* gc lists that ended in unreadable memory */
    uint64_t bad_links;     /* _gc_prev not pointing back */
    uint64_t bad_types;     /* gc objects whose ob_type is not a type */
    uint64_t static_types;  /* type objects found in static data */
    uint64_t immortal;      /* objects counted whose reference count says
                               immortal (3.12+) */
    uint64_t marked_links;  /* _gc_next with bit 0 set: a generational
                               collection was under way */
} cs_stats;

/* What the target says about itself. */
typedef struct {
    /* PY_VERSION_HEX from _Py_DebugOffsets (3.13+), else 0. */
    uint64_t hexversion;
    /* How many of the row's numbers the target's table replaced. */
    size_t fields_read;
    /* 3.14.0 to 3.14.4 ran the incremental collector: bit 0 of _gc_next
       is then which old space an object is in, not a mark. */
    int incremental_gc;
    /* gc.collecting was set: the young objects may be on a list of the
       collector's own, which the walk does not see. */
    int collecting;
    /* Where the main interpreter's three gc lists and its permanent one
       were read: the list heads. */
    uint64_t gc_heads[4];
} cs_target;

struct cs_graph; /* graph.h */

typedef struct {
    cs_image image;
    /* This target's layout: the version's row, with what its
       _Py_DebugOffsets gives in place of the row's numbers.  `lay`
       points to it. */
    cs_layout layout;
    const cs_layout *lay;
    cs_target target;
    uint64_t runtime;   /* &_PyRuntime */
    uint64_t type_type; /* &PyType_Type */
    /* The static types of known kinds, by address (from the symbols). */
    cs_addrmap known_kinds;

    cs_type **types; /* separately allocated: see types.h */
    size_t ntypes;
    size_t types_cap;
    cs_addrmap type_index; /* type address -> index in types */

    cs_node *nodes;
    size_t nnodes;
    size_t nodes_cap;

    cs_stats stats;
    uint64_t image_bytes; /* all segments: no object is bigger */
    int census_done;
    int out_of_memory;      /* set by any allocation that failed */
    struct cs_graph *graph; /* built by cs_graph_build() */
    char error[200];        /* why the last call failed */
} cs_scanner;

/* The addresses of all nodes, for cs_idset. */
static inline cs_addrs
cs_node_addrs(const cs_scanner *s)
{
    cs_addrs addrs = {(const char *)s->nodes, sizeof(cs_node)};
    return addrs;
}

/* Formats the reason of a failure into s->error; returns -1. */
int cs_fail(cs_scanner *s, const char *format, ...);

#endif
