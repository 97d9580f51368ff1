/* layout.h - where CPython keeps things, per minor version.
 *
 * This is the only place that knows struct layouts of CPython 3.9 to
 * 3.13.  One row of cs_layout per minor version, in layout.c; the rows
 * were printed by layout_probe.c (read its header for how), compiled
 * against each version's internal headers, so every number is an
 * offsetof() or sizeof() of the real struct.  -1 means "this version has
 * no such field".
 *
 * What the numbers cannot say (how a field is encoded) is keyed on the
 * minor version through the small predicates at the end of this file, so
 * that the decoders in objects.c ask "are ints tagged?" and never
 * "is this 3.12?".
 */
#ifndef PYLEAKHUNT_CENSUS_LAYOUT_H
#define PYLEAKHUNT_CENSUS_LAYOUT_H

#include <stdint.h>

/* Object header of the default build: ob_refcnt, ob_type, then ob_size
   for variable-size objects.  The same in every supported version. */
#define CS_OB_REFCNT 0
#define CS_OB_TYPE 8
#define CS_OB_SIZE 16
#define CS_OBJECT_SIZE 16
/* PyGC_Head: _gc_next, _gc_prev, just before the object. */
#define CS_GC_HEAD_SIZE 16
/* The managed dict/weakref pre-header before the gc head (3.11+). */
#define CS_PREHEADER_SIZE 16

/* tp_flags bits (Include/object.h); stable across 3.9-3.13 unless said. */
#define CS_TPFLAGS_INLINE_VALUES (1UL << 2)   /* 3.13 */
#define CS_TPFLAGS_MANAGED_WEAKREF (1UL << 3) /* 3.12+ */
#define CS_TPFLAGS_MANAGED_DICT (1UL << 4)    /* 3.11+ */
#define CS_TPFLAGS_HEAPTYPE (1UL << 9)
#define CS_TPFLAGS_READY (1UL << 12)
#define CS_TPFLAGS_HAVE_GC (1UL << 14)
#define CS_TPFLAGS_DICT_SUBCLASS (1UL << 29)
#define CS_TPFLAGS_TYPE_SUBCLASS (1UL << 31)

/* PyMemberDef types that hold an object reference (structmember.h). */
#define CS_T_OBJECT 6
#define CS_T_OBJECT_EX 16

/* collections.deque (Modules/_collectionsmodule.c, not installed: the
   same in 3.9 to 3.13): leftblock and leftindex after the var header; a
   block is a left link, 64 item slots, a right link. */
#define CS_DEQUE_LEFTBLOCK 24
#define CS_DEQUE_LEFTINDEX 40
#define CS_DEQUE_BLOCKLEN 64
#define CS_DEQUE_BLOCK_SIZE (8 + CS_DEQUE_BLOCKLEN * 8 + 8)

/* _PyInterpreterFrame.owner: 3 is a shim frame on the C stack (3.12+),
   with no function and no locals to read. */
#define CS_FRAME_OWNED_BY_CSTACK 3

typedef struct {
    int32_t minor; /* 9 for 3.9 ... */

    /* _PyRuntime, interpreters, threads, the gc lists */
    int32_t runtime_interp_head; /* _PyRuntime.interpreters.head */
    int32_t interp_next;
    int32_t interp_threads_head;
    int32_t interp_modules;     /* sys.modules */
    int32_t interp_generations; /* gc.generations[0] in the interpreter */
    int32_t interp_permanent;   /* gc.permanent_generation (gc.freeze()) */
    int32_t generation_size;    /* sizeof(struct gc_generation) */
    int32_t tstate_next;
    int32_t tstate_frame;         /* frame (3.9-10), cframe (3.11-12),
                                     current_frame (3.13) */
    int32_t cframe_current_frame; /* _PyCFrame.current_frame (3.11-12) */

    /* Frames: PyFrameObject (3.9-10) or _PyInterpreterFrame (3.11+) */
    int32_t frame_back;     /* 3.9-10 */
    int32_t frame_code;     /* f_code, or f_executable (3.13) */
    int32_t frame_previous; /* 3.11+ */
    int32_t frame_localsplus;
    int32_t frame_owner; /* 3.11+, a char */

    /* PyCodeObject */
    int32_t code_consts;
    int32_t code_names;
    int32_t code_name;
    int32_t code_filename;
    int32_t code_firstlineno;
    int32_t code_qualname;        /* 3.11+ */
    int32_t code_localsplusnames; /* 3.11+ */
    int32_t code_nlocalsplus;     /* 3.11+, an int */
    int32_t code_nfreevars;       /* 3.11+, an int */
    int32_t code_varnames;        /* 3.9-10 */
    int32_t code_cellvars;        /* 3.9-10 */
    int32_t code_freevars;        /* 3.9-10 */

    /* PyTypeObject, PyHeapTypeObject, member descriptors */
    int32_t type_name;
    int32_t type_basicsize;
    int32_t type_itemsize;
    int32_t type_flags;
    int32_t type_base;
    int32_t type_dict;
    int32_t type_dictoffset;
    int32_t type_weaklistoffset;
    int32_t type_size;
    int32_t heap_type_size;
    int32_t heap_name;
    int32_t heap_qualname;
    int32_t heap_cached_keys;
    int32_t member_descr_member;
    int32_t member_def_name;
    int32_t member_def_type;
    int32_t member_def_offset;

    /* Containers */
    int32_t tuple_items;
    int32_t list_items;
    int32_t list_allocated;
    int32_t dict_size;
    int32_t dict_used;
    int32_t dict_keys;
    int32_t dict_values;
    int32_t keys_refcnt;
    int32_t keys_size;             /* 3.9: dk_size, a Py_ssize_t */
    int32_t keys_log2_size;        /* 3.10+: a uint8_t */
    int32_t keys_log2_index_bytes; /* 3.11+: a uint8_t */
    int32_t keys_kind;             /* 3.11+: a uint8_t */
    int32_t keys_usable;
    int32_t keys_nentries;
    int32_t keys_indices;
    int32_t values_values; /* the array in PyDictValues */
    int32_t set_fill;
    int32_t set_used;
    int32_t set_mask;
    int32_t set_table;
    int32_t set_smalltable;
    int32_t set_entry_size;

    /* Scalars */
    int32_t ascii_size;   /* sizeof(PyASCIIObject) */
    int32_t compact_size; /* sizeof(PyCompactUnicodeObject) */
    int32_t unicode_size; /* sizeof(PyUnicodeObject) */
    int32_t unicode_length;
    int32_t unicode_state;
    int32_t unicode_utf8_length;
    int32_t unicode_utf8;
    int32_t unicode_data;
    int32_t bytes_sval;
    int32_t long_digits;
    int32_t float_size;
    int32_t bytearray_size;
    int32_t bytearray_alloc; /* then ob_bytes and ob_start, 8 bytes apart */

    /* Functions, cells, methods, modules */
    int32_t func_code;
    int32_t func_defaults;
    int32_t func_kwdefaults;
    int32_t func_closure;
    int32_t func_dict;
    int32_t func_qualname;
    int32_t func_module;
    int32_t cell_ref;
    int32_t method_func;
    int32_t method_self;
    int32_t module_dict;
} cs_layout;

/* The row for 3.`minor`, or NULL if that version is not supported. */
const cs_layout *cs_layout_for(int minor);

/* ---- encodings that the offsets cannot express -------------------------- */

/* 3.12+: an int's size is a tag (ndigits << 3 | sign), not ob_size. */
static inline int
cs_long_is_tagged(const cs_layout *lay)
{
    return lay->minor >= 12;
}

/* 3.11+: dict keys have a kind (general: 24-byte entries with a hash;
   unicode/split: 16-byte entries, key and value), and the size of the
   index table is stored as a log2. */
static inline int
cs_keys_have_kind(const cs_layout *lay)
{
    return lay->keys_kind >= 0;
}

/* tp_flags that put 16 bytes of pre-header before the gc head. */
static inline uint64_t
cs_preheader_flags(const cs_layout *lay)
{
    if (lay->minor >= 12) {
        return CS_TPFLAGS_MANAGED_DICT | CS_TPFLAGS_MANAGED_WEAKREF;
    }
    if (lay->minor == 11) {
        return CS_TPFLAGS_MANAGED_DICT;
    }
    return 0;
}

/* 3.11+: frames are _PyInterpreterFrame, linked by `previous`. */
static inline int
cs_frames_are_interpreter_frames(const cs_layout *lay)
{
    return lay->minor >= 11;
}

#endif
