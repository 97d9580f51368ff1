/* layout.h - where CPython keeps things, per minor version.
 *
 * This is the only place that knows struct layouts of CPython 3.10 to
 * 3.15.  One row of cs_layout per minor version, in layout.c; the rows
 * were printed by layout_probe.c (read its header for how), compiled
 * against each version's internal headers, so every number is an
 * offsetof() or sizeof() of the real struct.  -1 means "this version has
 * no such field".
 *
 * From 3.13 on, a running interpreter describes itself: _PyRuntime starts
 * with _Py_DebugOffsets, a table of the offsets debuggers need.  Where that
 * table has a field, the row only says *where in the table* to find it
 * (cs_debug_map, also printed by the probe), and debugoffsets.c replaces
 * the row's number with the target's own before anything is read.  The
 * row keeps the rest: PyGC_Head, managed dicts, dict-keys internals.
 *
 * What the numbers cannot say (how a field is encoded) is keyed on the
 * minor version through the small predicates at the end of this file, so
 * that the decoders in objects.c ask "are ints tagged?" and never
 * "is this 3.12?".
 */
#ifndef PYLEAKHUNT_CENSUS_LAYOUT_H
#define PYLEAKHUNT_CENSUS_LAYOUT_H

#include <stddef.h>
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

/* tp_flags bits (Include/object.h); stable across 3.10-3.15 unless said. */
#define CS_TPFLAGS_INLINE_VALUES (1UL << 2)   /* 3.13+ */
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
   same in 3.10 to 3.15): leftblock and leftindex after the var header; a
   block is a left link, 64 item slots, a right link. */
#define CS_DEQUE_LEFTBLOCK 24
#define CS_DEQUE_LEFTINDEX 40
#define CS_DEQUE_BLOCKLEN 64
#define CS_DEQUE_BLOCK_SIZE (8 + CS_DEQUE_BLOCKLEN * 8 + 8)

/* _PyInterpreterFrame.owner: 0-2 are frames of Python functions
   (thread, generator, frame object); 3 and above are frames with no
   function and no locals to read: the C-stack shim of 3.12-3.13, the
   interpreter's own and the C-stack frames of 3.14, the base frame of
   3.15.  tracemalloc skips the same (_PyFrame_GetFirstComplete). */
#define CS_FRAME_OWNER_FIRST_NOT_PYTHON 3

/* The fields that _Py_DebugOffsets gives, as X(row field, path in the
   table).  CS_DEBUG_FIELDS is in every table (3.13+); the others were
   added to the table later. */
#define CS_DEBUG_FIELDS(X)                                                    \
    X(runtime_interp_head, runtime_state.interpreters_head)                   \
    X(interp_next, interpreter_state.next)                                    \
    X(interp_threads_head, interpreter_state.threads_head)                    \
    X(interp_modules, interpreter_state.imports_modules)                      \
    X(interp_gc, interpreter_state.gc)                                        \
    X(tstate_next, thread_state.next)                                         \
    X(tstate_frame, thread_state.current_frame)                               \
    X(frame_previous, interpreter_frame.previous)                             \
    X(frame_code, interpreter_frame.executable)                               \
    X(frame_localsplus, interpreter_frame.localsplus)                         \
    X(frame_owner, interpreter_frame.owner)                                   \
    X(code_filename, code_object.filename)                                    \
    X(code_name, code_object.name)                                            \
    X(code_qualname, code_object.qualname)                                    \
    X(code_firstlineno, code_object.firstlineno)                              \
    X(code_localsplusnames, code_object.localsplusnames)                      \
    X(type_name, type_object.tp_name)                                         \
    X(type_flags, type_object.tp_flags)                                       \
    X(type_size, type_object.size)                                            \
    X(tuple_items, tuple_object.ob_item)                                      \
    X(list_items, list_object.ob_item)                                        \
    X(dict_size, dict_object.size)                                            \
    X(dict_keys, dict_object.ma_keys)                                         \
    X(dict_values, dict_object.ma_values)                                     \
    X(float_size, float_object.size)                                          \
    X(long_digits, long_object.ob_digit)                                      \
    X(bytes_sval, bytes_object.ob_sval)                                       \
    X(unicode_size, unicode_object.size)                                      \
    X(unicode_state, unicode_object.state)                                    \
    X(unicode_length, unicode_object.length)                                  \
    X(ascii_size, unicode_object.asciiobject_size)                            \
    X(gc_collecting, gc.collecting)
/* 3.14+ */
#define CS_DEBUG_FIELDS_314(X)                                                \
    X(set_used, set_object.used)                                              \
    X(set_table, set_object.table)                                            \
    X(set_mask, set_object.mask)
/* 3.15+ */
#define CS_DEBUG_FIELDS_315(X)                                                \
    X(type_basicsize, type_object.tp_basicsize)                               \
    X(type_dictoffset, type_object.tp_dictoffset)                             \
    X(heap_type_size, heap_type_object.size)                                  \
    X(heap_cached_keys, heap_type_object.ht_cached_keys)                      \
    X(compact_size, unicode_object.compactunicodeobject_size)

#define CS_ALL_DEBUG_FIELDS(X)                                                \
    CS_DEBUG_FIELDS(X) CS_DEBUG_FIELDS_314(X) CS_DEBUG_FIELDS_315(X)

/* Where each of those fields is in the version's _Py_DebugOffsets (byte
   offsets from the start of _PyRuntime); 0 means "not in this version's
   table" (0 is the cookie, never a field). */
#define CS_DEBUG_MAP_FIELD(name, path) int32_t name;
typedef struct {
    int32_t table_size; /* sizeof(_Py_DebugOffsets); 0 before 3.13 */
    int32_t version;    /* PY_VERSION_HEX of the target */
    int32_t free_threaded;
    CS_ALL_DEBUG_FIELDS(CS_DEBUG_MAP_FIELD)
} cs_debug_map;
#undef CS_DEBUG_MAP_FIELD

typedef struct {
    int32_t minor; /* 10 for 3.10 ... */

    /* _PyRuntime, interpreters, threads, the gc lists */
    int32_t runtime_interp_head; /* _PyRuntime.interpreters.head */
    int32_t interp_next;
    int32_t interp_threads_head;
    int32_t interp_modules; /* sys.modules */
    int32_t interp_gc;      /* the interpreter's struct _gc_runtime_state */
    /* In struct _gc_runtime_state: the three lists (generations[0..2] of
       the generational collector, young and old[0..1] of 3.14.0-3.14.4's
       incremental one: same place, same size), gc.freeze()'s permanent
       generation, and the flag set while a collection runs. */
    int32_t gc_generations;
    int32_t gc_permanent;
    int32_t gc_collecting;
    int32_t generation_size; /* sizeof(struct gc_generation) */
    int32_t tstate_next;
    int32_t tstate_frame;         /* frame (3.10), cframe (3.11-12),
                                     current_frame (3.13+) */
    int32_t cframe_current_frame; /* _PyCFrame.current_frame (3.11-12) */

    /* Frames: PyFrameObject (3.10) or _PyInterpreterFrame (3.11+) */
    int32_t frame_back;     /* 3.10 */
    int32_t frame_code;     /* f_code, or f_executable (3.13+; a stack
                               reference from 3.14) */
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
    int32_t code_varnames;        /* 3.10 */
    int32_t code_cellvars;        /* 3.10 */
    int32_t code_freevars;        /* 3.10 */

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
    int32_t keys_size;             /* 3.10: dk_size, a Py_ssize_t */
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
    /* 3.15+: the buffer is the bytes of a bytes object the bytearray
       holds (ob_bytes_object), an object of its own. */
    int32_t bytearray_bytes_object;

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

    cs_debug_map dbg;
} cs_layout;

/* The row for 3.`minor`, or NULL if that version is not supported. */
const cs_layout *cs_layout_for(int minor);

/* The names of the fields that _Py_DebugOffsets can give, in
   CS_ALL_DEBUG_FIELDS order, and a pointer to each in `lay`. */
extern const char *const cs_debug_field_names[];
size_t cs_debug_field_count(void);
int32_t *cs_debug_field(cs_layout *lay, size_t index);
int32_t cs_debug_field_position(const cs_layout *lay, size_t index);

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

/* 3.12+: the reference count is the low 32 bits of the first word, and
   an object whose count, as a signed 32-bit number, is negative is
   immortal (_Py_IsImmortal).  3.14+ keep 16 bits of ob_flags in the top
   of the word (ob_overflow between is unused in the GIL build). */
static inline int
cs_refcnt_is_32bit(const cs_layout *lay)
{
    return lay->minor >= 12;
}

static inline int
cs_header_has_flags(const cs_layout *lay)
{
    return lay->minor >= 14;
}

/* 3.14+: frames hold _PyStackRef, not PyObject *: a tagged word.  In the
   GIL build, tag 0 or 1 (Py_TAG_REFCNT: a deferred reference) is an
   object pointer with those bits cleared; bits == 1 is NULL; tag 3 is a
   tagged int and 2 (3.15) an error marker, neither an object. */
static inline int
cs_frames_use_stackrefs(const cs_layout *lay)
{
    return lay->minor >= 14;
}

static inline uint64_t
cs_stackref_object(const cs_layout *lay, uint64_t bits)
{
    if (!cs_frames_use_stackrefs(lay)) {
        return bits;
    }
    if ((bits & 3) >= 2) {
        return 0;
    }
    return bits & ~(uint64_t)3;
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
