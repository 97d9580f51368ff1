/* topython.c - target objects and paths as Python values (topython.h).
 *
 * The scanner reads a str of the target as raw characters; this file is
 * where they become Python strs, and where a path step (an edge and what
 * it names) becomes the tuple Python renders (pyleakhunt/census/paths.py).
 */
#define PY_SSIZE_T_CLEAN
#include "topython.h"

#include <string.h>

#include "graph.h"
#include "types.h"

static const char *const edge_names[CS_EDGE_COUNT] = {
    "none",       "module",   "local",         "static_type",
    "key",        "dict_key", "item",          "member",
    "attr",       "slot",     "instance_dict", "module_dict",
    "class_dict", "closure",  "field",         "offset",
};

static const char *const field_names[CS_FIELD_COUNT] = {
    "__closure__",   "__defaults__", "__kwdefaults__", "__code__",  "__dict__",
    "cell_contents", "__self__",     "__func__",       "co_consts", "co_names",
};

/* Py_NewRef() is 3.10+. */
PyObject *
cs_py_new_ref(PyObject *obj)
{
    Py_INCREF(obj);
    return obj;
}

/* ---- strings and names -------------------------------- */

/* The str at `addr` as a Python str, or None if it is not one. */
PyObject *
cs_py_str(cs_scanner *s, uint64_t addr)
{
    cs_strview view;
    if (addr == 0 || cs_str_read(s, addr, &view) < 0
        || view.length > PY_SSIZE_T_MAX / 4) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromKindAndData(view.kind, view.data,
                                     (Py_ssize_t)view.length);
}

PyObject *
cs_py_cstr(cs_scanner *s, uint64_t addr)
{
    const char *text = addr == 0 ? NULL : cs_image_cstr(&s->image, addr, 512);
    if (text == NULL) {
        Py_RETURN_NONE;
    }
    return PyUnicode_DecodeUTF8(text, (Py_ssize_t)strlen(text), "replace");
}

/* "module.Qualname" for a class, tp_name for a static type. */
PyObject *
cs_py_type_name(cs_scanner *s, cs_type *t)
{
    if (cs_type_is_heap(t)) {
        uint64_t qualname_addr
            = cs_word(&s->image, t->addr + s->lay->heap_qualname);
        PyObject *qualname = cs_py_str(s, qualname_addr);
        PyObject *module = cs_py_str(s, cs_dict_get(s, t->dict, "__module__"));
        PyObject *name = NULL;
        if (qualname == NULL || module == NULL || qualname == Py_None) {
            /* fall through to tp_name */
        }
        else if (module == Py_None
                 || PyUnicode_CompareWithASCIIString(module, "builtins")
                        == 0) {
            name = cs_py_new_ref(qualname);
        }
        else {
            name = PyUnicode_FromFormat("%U.%U", module, qualname);
        }
        Py_XDECREF(qualname);
        Py_XDECREF(module);
        if (name != NULL || PyErr_Occurred()) {
            return name;
        }
    }
    uint64_t tp_name = cs_word(&s->image, t->addr + s->lay->type_name);
    PyObject *name = cs_py_cstr(s, tp_name);
    if (name == Py_None) {
        Py_DECREF(name);
        return PyUnicode_FromFormat("<type at 0x%llx>",
                                    (unsigned long long)t->addr);
    }
    return name;
}

/* A dict key as a label: a str or an int as themselves, anything else
   as None (the caller shows its type). */
static PyObject *
key_label(cs_scanner *s, uint64_t key)
{
    cs_type *t = cs_type_of(s, key);
    if (t != NULL && t->kind == CS_KIND_STR) {
        return cs_py_str(s, key);
    }
    if (t != NULL && t->kind == CS_KIND_INT && !cs_type_is_heap(t)) {
        uint64_t tag = cs_word(&s->image, key + CS_OB_SIZE);
        uint32_t digit = cs_u32(&s->image, key + s->lay->long_digits);
        int64_t ndigits
            = cs_long_is_tagged(s->lay) ? (int64_t)(tag >> 3) : (int64_t)tag;
        int negative
            = cs_long_is_tagged(s->lay) ? (tag & 3) == 2 : (int64_t)tag < 0;
        if (ndigits < 0) {
            ndigits = -ndigits;
        }
        if (ndigits <= 1) {
            long long value = ndigits == 0 ? 0 : (long long)digit;
            return PyLong_FromLongLong(negative ? -value : value);
        }
    }
    Py_RETURN_NONE;
}

/* ("function", "variable", "filename", firstlineno) of local `index` in
   the frame of code object `code`. */
static PyObject *
local_label(cs_scanner *s, uint64_t code, uint64_t index)
{
    const cs_layout *lay = s->lay;
    uint64_t name_field = lay->code_qualname >= 0
                              ? (uint64_t)lay->code_qualname
                              : (uint64_t)lay->code_name;
    PyObject *function = cs_py_str(s, cs_word(&s->image, code + name_field));
    PyObject *variable = cs_py_str(s, cs_local_name(s, code, index));
    PyObject *filename
        = cs_py_str(s, cs_word(&s->image, code + lay->code_filename));
    int firstlineno = (int)cs_u32(&s->image, code + lay->code_firstlineno);
    if (function == NULL || variable == NULL || filename == NULL) {
        Py_XDECREF(function);
        Py_XDECREF(variable);
        Py_XDECREF(filename);
        return NULL;
    }
    return Py_BuildValue("(NNNi)", function, variable, filename, firstlineno);
}

/* The label of an edge: what a person needs to name the child. */
static PyObject *
edge_label(cs_scanner *s, cs_edge edge, uint64_t aux, uint64_t aux2,
           uint32_t holder, int general)
{
    if (general) {
        Py_RETURN_NONE;
    }
    switch (edge) {
    case CS_EDGE_MODULE:
    case CS_EDGE_ATTR:
        return cs_py_str(s, aux);
    case CS_EDGE_DICT_VALUE:
        return key_label(s, aux);
    case CS_EDGE_LOCAL:
        return local_label(s, aux, aux2);
    case CS_EDGE_STATIC_TYPE: {
        cs_type *t = cs_type_known(s, aux);
        return t == NULL ? cs_py_new_ref(Py_None) : cs_py_type_name(s, t);
    }
    case CS_EDGE_ITEM:
    case CS_EDGE_FIELD:
        return PyLong_FromUnsignedLongLong(aux);
    case CS_EDGE_SLOT:
        return cs_py_cstr(s, aux);
    case CS_EDGE_NAMED:
        return aux < CS_FIELD_COUNT ? PyUnicode_FromString(field_names[aux])
                                    : cs_py_new_ref(Py_None);
    case CS_EDGE_CLOSURE:
        if (holder >= s->nnodes) {
            Py_RETURN_NONE;
        }
        return cs_py_str(s, cs_closure_name(s, s->nodes[holder].addr, aux));
    default:
        Py_RETURN_NONE;
    }
}

/* (type name, class name or None): the class name when the object is
   itself a class, so that paths can start from a name people know. */
static PyObject *
node_names(cs_scanner *s, uint32_t id)
{
    const cs_node *node = &s->nodes[id];
    PyObject *name = cs_py_type_name(s, s->types[node->type]);
    if (name == NULL) {
        return NULL;
    }
    cs_type *as_type = cs_type_known(s, node->addr);
    if (as_type == NULL || !cs_type_is_heap(as_type)) {
        return Py_BuildValue("(NO)", name, Py_None);
    }
    PyObject *class_name = cs_py_type_name(s, as_type);
    if (class_name == NULL) {
        Py_DECREF(name);
        return NULL;
    }
    return Py_BuildValue("(NN)", name, class_name);
}

/* A step of a path: (edge, label, address, type name, class name,
   generalised). */
PyObject *
cs_py_step(cs_scanner *s, cs_edge edge, uint64_t aux, uint64_t aux2,
           uint32_t id, int general)
{
    const char *edge_name = edge < CS_EDGE_COUNT ? edge_names[edge] : "none";
    uint32_t holder = s->graph->parent[id];
    PyObject *label = edge_label(s, edge, aux, aux2, holder, general);
    PyObject *names = label == NULL ? NULL : node_names(s, id);
    if (names == NULL) {
        Py_XDECREF(label);
        return NULL;
    }
    PyObject *step = Py_BuildValue(
        "(sNKOOO)", edge_name, label, (unsigned long long)s->nodes[id].addr,
        PyTuple_GET_ITEM(names, 0), PyTuple_GET_ITEM(names, 1),
        general ? Py_True : Py_False);
    Py_DECREF(names);
    return step;
}
