/* layout_probe.c: print the CPython layout that the census needs, as a C
 * initializer for one row of the table in layout.c.
 *
 * This program is not part of the extension.  It is how the rows of
 * layout.c were made: compile it against one interpreter's *internal*
 * headers and run it, once per minor version.
 *
 *   V=3.12; P=$(pyenv root)/versions/3.12.1/include/python$V
 *   cc -DPy_BUILD_CORE -I$P -I$P/internal -Isrc/census -o probe \
 *       src/census/layout_probe.c
 *   ./probe
 *
 * (Debian's packages install the internal headers too: for 3.14 and 3.15,
 * P=/usr/include/python$V.)
 *
 * Every number comes from offsetof()/sizeof() on the real structs, except
 * the dict keys layout of 3.10, whose struct lives in
 * Objects/dict-common.h and is not installed; it is written out by hand
 * below from that file (dk_refcnt, dk_size, the dk_lookup function
 * pointer, dk_usable, dk_nentries, then the index), and was checked
 * against the keys of sys.modules in a core of 3.10.13.  The layouts
 * are those of the default (release, GIL) build; debug builds (Py_DEBUG,
 * Py_TRACE_REFS) and free-threaded builds differ and are refused.
 *
 * From 3.13 the probe also prints `.dbg`: where, in the version's
 * _Py_DebugOffsets, the target gives each field of CS_ALL_DEBUG_FIELDS
 * (layout.h); the census reads those from the target.
 */
#include <Python.h>
#include <frameobject.h>
#include <structmember.h>
#include <stddef.h>
#include <stdio.h>

#include "pycore_interp.h"
#include "pycore_runtime.h"
#include "layout.h"
#if PY_MINOR_VERSION >= 11
#include "pycore_dict.h"
#include "pycore_frame.h"
#include "pycore_code.h"
#endif

#define SHOW(name, value) printf("    .%s = %ld,\n", name, (long)(value))
#define NONE(name) printf("    .%s = -1,\n", name)

typedef struct {
    PyObject_HEAD PyObject *md_dict;
} probe_module;

/* 3.10: Objects/dict-common.h, copied here (not installed). */
#if PY_MINOR_VERSION <= 10
struct probe_keys {
    Py_ssize_t dk_refcnt;
    Py_ssize_t dk_size;
    void *dk_lookup;
    Py_ssize_t dk_usable;
    Py_ssize_t dk_nentries;
    char dk_indices[];
};
#else
#define probe_keys _dictkeysobject
#endif

static void
show_runtime(void)
{
    SHOW("runtime_interp_head", offsetof(_PyRuntimeState, interpreters.head));
    SHOW("interp_next", offsetof(PyInterpreterState, next));
#if PY_MINOR_VERSION >= 11
    SHOW("interp_threads_head", offsetof(PyInterpreterState, threads.head));
#else
    SHOW("interp_threads_head", offsetof(PyInterpreterState, tstate_head));
#endif
#if PY_MINOR_VERSION >= 12
    SHOW("interp_modules", offsetof(PyInterpreterState, imports.modules));
#else
    SHOW("interp_modules", offsetof(PyInterpreterState, modules));
#endif
    SHOW("interp_gc", offsetof(PyInterpreterState, gc));
    SHOW("gc_generations", offsetof(struct _gc_runtime_state, generations));
    SHOW("gc_permanent",
         offsetof(struct _gc_runtime_state, permanent_generation));
    SHOW("gc_collecting", offsetof(struct _gc_runtime_state, collecting));
    SHOW("generation_size", sizeof(struct gc_generation));
    SHOW("tstate_next", offsetof(PyThreadState, next));
#if PY_MINOR_VERSION >= 13
    SHOW("tstate_frame", offsetof(PyThreadState, current_frame));
    NONE("cframe_current_frame");
#elif PY_MINOR_VERSION >= 11
    SHOW("tstate_frame", offsetof(PyThreadState, cframe));
    SHOW("cframe_current_frame", offsetof(_PyCFrame, current_frame));
#else
    SHOW("tstate_frame", offsetof(PyThreadState, frame));
    NONE("cframe_current_frame");
#endif
}

static void
show_frames(void)
{
#if PY_MINOR_VERSION >= 11
    NONE("frame_back");
#if PY_MINOR_VERSION >= 13
    SHOW("frame_code", offsetof(_PyInterpreterFrame, f_executable));
#else
    SHOW("frame_code", offsetof(_PyInterpreterFrame, f_code));
#endif
    SHOW("frame_previous", offsetof(_PyInterpreterFrame, previous));
    SHOW("frame_localsplus", offsetof(_PyInterpreterFrame, localsplus));
    SHOW("frame_owner", offsetof(_PyInterpreterFrame, owner));
#else
    SHOW("frame_back", offsetof(PyFrameObject, f_back));
    SHOW("frame_code", offsetof(PyFrameObject, f_code));
    NONE("frame_previous");
    SHOW("frame_localsplus", offsetof(PyFrameObject, f_localsplus));
    NONE("frame_owner");
#endif
}

static void
show_code(void)
{
    SHOW("code_consts", offsetof(PyCodeObject, co_consts));
    SHOW("code_names", offsetof(PyCodeObject, co_names));
    SHOW("code_name", offsetof(PyCodeObject, co_name));
    SHOW("code_filename", offsetof(PyCodeObject, co_filename));
    SHOW("code_firstlineno", offsetof(PyCodeObject, co_firstlineno));
#if PY_MINOR_VERSION >= 11
    SHOW("code_qualname", offsetof(PyCodeObject, co_qualname));
    SHOW("code_localsplusnames", offsetof(PyCodeObject, co_localsplusnames));
    SHOW("code_nlocalsplus", offsetof(PyCodeObject, co_nlocalsplus));
    SHOW("code_nfreevars", offsetof(PyCodeObject, co_nfreevars));
    NONE("code_varnames");
    NONE("code_cellvars");
    NONE("code_freevars");
#else
    NONE("code_qualname");
    NONE("code_localsplusnames");
    NONE("code_nlocalsplus");
    NONE("code_nfreevars");
    SHOW("code_varnames", offsetof(PyCodeObject, co_varnames));
    SHOW("code_cellvars", offsetof(PyCodeObject, co_cellvars));
    SHOW("code_freevars", offsetof(PyCodeObject, co_freevars));
#endif
}

static void
show_types(void)
{
    SHOW("type_name", offsetof(PyTypeObject, tp_name));
    SHOW("type_basicsize", offsetof(PyTypeObject, tp_basicsize));
    SHOW("type_itemsize", offsetof(PyTypeObject, tp_itemsize));
    SHOW("type_flags", offsetof(PyTypeObject, tp_flags));
    SHOW("type_base", offsetof(PyTypeObject, tp_base));
    SHOW("type_dict", offsetof(PyTypeObject, tp_dict));
    SHOW("type_dictoffset", offsetof(PyTypeObject, tp_dictoffset));
    SHOW("type_weaklistoffset", offsetof(PyTypeObject, tp_weaklistoffset));
    SHOW("type_size", sizeof(PyTypeObject));
    SHOW("heap_type_size", sizeof(PyHeapTypeObject));
    SHOW("heap_name", offsetof(PyHeapTypeObject, ht_name));
    SHOW("heap_qualname", offsetof(PyHeapTypeObject, ht_qualname));
    SHOW("heap_cached_keys", offsetof(PyHeapTypeObject, ht_cached_keys));
    SHOW("member_descr_member", offsetof(PyMemberDescrObject, d_member));
    SHOW("member_def_name", offsetof(PyMemberDef, name));
    SHOW("member_def_type", offsetof(PyMemberDef, type));
    SHOW("member_def_offset", offsetof(PyMemberDef, offset));
}

static void
show_containers(void)
{
    SHOW("tuple_items", offsetof(PyTupleObject, ob_item));
    SHOW("list_items", offsetof(PyListObject, ob_item));
    SHOW("list_allocated", offsetof(PyListObject, allocated));
    SHOW("dict_size", sizeof(PyDictObject));
    SHOW("dict_used", offsetof(PyDictObject, ma_used));
    SHOW("dict_keys", offsetof(PyDictObject, ma_keys));
    SHOW("dict_values", offsetof(PyDictObject, ma_values));
    SHOW("keys_refcnt", offsetof(struct probe_keys, dk_refcnt));
#if PY_MINOR_VERSION <= 10
    SHOW("keys_size", offsetof(struct probe_keys, dk_size));
    NONE("keys_log2_size");
#else
    NONE("keys_size");
    SHOW("keys_log2_size", offsetof(struct probe_keys, dk_log2_size));
#endif
#if PY_MINOR_VERSION >= 11
    SHOW("keys_log2_index_bytes",
         offsetof(struct probe_keys, dk_log2_index_bytes));
    SHOW("keys_kind", offsetof(struct probe_keys, dk_kind));
#else
    NONE("keys_log2_index_bytes");
    NONE("keys_kind");
#endif
    SHOW("keys_usable", offsetof(struct probe_keys, dk_usable));
    SHOW("keys_nentries", offsetof(struct probe_keys, dk_nentries));
    SHOW("keys_indices", offsetof(struct probe_keys, dk_indices));
#if PY_MINOR_VERSION >= 13
    SHOW("values_values", offsetof(PyDictValues, values));
#else
    SHOW("values_values", 0);
#endif
    SHOW("set_fill", offsetof(PySetObject, fill));
    SHOW("set_used", offsetof(PySetObject, used));
    SHOW("set_mask", offsetof(PySetObject, mask));
    SHOW("set_table", offsetof(PySetObject, table));
    SHOW("set_smalltable", offsetof(PySetObject, smalltable));
    SHOW("set_entry_size", sizeof(setentry));
}

static void
show_scalars(void)
{
    SHOW("ascii_size", sizeof(PyASCIIObject));
    SHOW("compact_size", sizeof(PyCompactUnicodeObject));
    SHOW("unicode_size", sizeof(PyUnicodeObject));
    SHOW("unicode_length", offsetof(PyASCIIObject, length));
    SHOW("unicode_state", offsetof(PyASCIIObject, state));
    SHOW("unicode_utf8_length", offsetof(PyCompactUnicodeObject, utf8_length));
    SHOW("unicode_utf8", offsetof(PyCompactUnicodeObject, utf8));
    SHOW("unicode_data", offsetof(PyUnicodeObject, data));
    SHOW("bytes_sval", offsetof(PyBytesObject, ob_sval));
#if PY_MINOR_VERSION >= 12
    SHOW("long_digits", offsetof(PyLongObject, long_value.ob_digit));
#else
    SHOW("long_digits", offsetof(PyLongObject, ob_digit));
#endif
    SHOW("float_size", sizeof(PyFloatObject));
    SHOW("bytearray_size", sizeof(PyByteArrayObject));
    SHOW("bytearray_alloc", offsetof(PyByteArrayObject, ob_alloc));
#if PY_MINOR_VERSION >= 15
    SHOW("bytearray_bytes_object",
         offsetof(PyByteArrayObject, ob_bytes_object));
#else
    NONE("bytearray_bytes_object");
#endif
}

static void
show_callables(void)
{
    SHOW("func_code", offsetof(PyFunctionObject, func_code));
    SHOW("func_defaults", offsetof(PyFunctionObject, func_defaults));
    SHOW("func_kwdefaults", offsetof(PyFunctionObject, func_kwdefaults));
    SHOW("func_closure", offsetof(PyFunctionObject, func_closure));
    SHOW("func_dict", offsetof(PyFunctionObject, func_dict));
    SHOW("func_qualname", offsetof(PyFunctionObject, func_qualname));
    SHOW("func_module", offsetof(PyFunctionObject, func_module));
    SHOW("cell_ref", offsetof(PyCellObject, ob_ref));
    SHOW("method_func", offsetof(PyMethodObject, im_func));
    SHOW("method_self", offsetof(PyMethodObject, im_self));
    SHOW("module_dict", offsetof(probe_module, md_dict));
}

/* Where the target's _Py_DebugOffsets holds each field it gives. */
#define SHOW_DEBUG(name, path)                                                \
    printf("        .%s = %ld,\n", #name,                                     \
           (long)offsetof(_Py_DebugOffsets, path));
#define NONE_DEBUG(name, path) printf("        .%s = 0,\n", #name);

static void
show_debug_offsets(void)
{
    printf("    .dbg = {\n");
#if PY_MINOR_VERSION >= 13
    printf("        .table_size = %ld,\n", (long)sizeof(_Py_DebugOffsets));
    printf("        .version = %ld,\n",
           (long)offsetof(_Py_DebugOffsets, version));
    printf("        .free_threaded = %ld,\n",
           (long)offsetof(_Py_DebugOffsets, free_threaded));
    CS_DEBUG_FIELDS(SHOW_DEBUG)
#else
    printf("        .table_size = 0,\n");
    printf("        .version = 0,\n");
    printf("        .free_threaded = 0,\n");
    CS_DEBUG_FIELDS(NONE_DEBUG)
#endif
#if PY_MINOR_VERSION >= 14
    CS_DEBUG_FIELDS_314(SHOW_DEBUG)
#else
    CS_DEBUG_FIELDS_314(NONE_DEBUG)
#endif
#if PY_MINOR_VERSION >= 15
    CS_DEBUG_FIELDS_315(SHOW_DEBUG)
#else
    CS_DEBUG_FIELDS_315(NONE_DEBUG)
#endif
    printf("    },\n");
}

int
main(void)
{
    printf("{\n    .minor = %d,\n", PY_MINOR_VERSION);
    show_runtime();
    show_frames();
    show_code();
    show_types();
    show_containers();
    show_scalars();
    show_callables();
    show_debug_offsets();
    printf("},\n");
    return 0;
}
