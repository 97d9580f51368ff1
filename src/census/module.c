/* module.c - pyleakhunt.census._scan: the Python face of the scanner.
 *
 * Two types.  Image wraps one cs_scanner: Python hands it the segments
 * of a memory image (buffers it keeps views of) and the addresses it
 * found in the symbol tables; Image runs the census and the graph with
 * the GIL released, and turns their answers into tuples.  Pause holds a
 * live process still (pause.c) until resume().
 *
 * Everything that is policy (which file, which version, what to print)
 * is Python's; this file only converts.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdlib.h>

#include "census.h"
#include "debugoffsets.h"
#include "graph.h"
#include "objects.h"
#include "pause.h"
#include "readmem.h"
#include "scanner.h"
#include "topython.h"
#include "types.h"

static const char *const kind_names[CS_KIND_COUNT] = {
    "other",
    "object",
    "type",
    "list",
    "tuple",
    "dict",
    "set",
    "module",
    "function",
    "cell",
    "method",
    "code",
    "weakref",
    "str",
    "bytes",
    "int",
    "float",
    "bytearray",
    "member_descriptor",
    "deque",
};

static const char *const end_names[] = {
    "reached",
    "no_referrer",
    "cycle",
    "too_deep",
};

/* The module's only state: the exception it raises when a census cannot
   be taken.  Set once, at import. */
static struct {
    PyObject *census_error;
} scan_state;

/* ---- Image ---------------------------------------------------------------
 */

typedef struct {
    PyObject_HEAD cs_scanner scanner;
    Py_buffer *views;
    size_t nviews;
    int busy; /* a call runs without the GIL: refuse re-entry */
} ImageObject;

static void
release_views(ImageObject *self)
{
    for (size_t i = 0; i < self->nviews; i++) {
        PyBuffer_Release(&self->views[i]);
    }
    PyMem_Free(self->views);
    self->views = NULL;
    self->nviews = 0;
}

static void
Image_dealloc(ImageObject *self)
{
    cs_scanner *s = &self->scanner;
    cs_graph_free(s);
    cs_types_free(s);
    cs_addrmap_free(&s->known_kinds);
    free(s->nodes);
    PyMem_Free(s->image.segs);
    release_views(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* One (start, buffer, flags) segment. */
static int
add_segment(ImageObject *self, PyObject *item)
{
    unsigned long long start;
    PyObject *buffer;
    unsigned int flags;
    if (!PyArg_ParseTuple(item, "KOI;a segment is (start, buffer, flags)",
                          &start, &buffer, &flags)) {
        return -1;
    }
    Py_buffer *view = &self->views[self->nviews];
    if (PyObject_GetBuffer(buffer, view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    self->nviews++;
    if (view->len == 0) {
        return 0;
    }
    if (start > UINT64_MAX - (uint64_t)view->len) {
        PyErr_SetString(PyExc_ValueError, "segment wraps around");
        return -1;
    }
    cs_image *img = &self->scanner.image;
    cs_segment *seg = &img->segs[img->nsegs++];
    seg->start = start;
    seg->end = start + (uint64_t)view->len;
    seg->data = view->buf;
    seg->flags = flags;
    return 0;
}

static int
add_segments(ImageObject *self, PyObject *segments)
{
    PyObject *seq = PySequence_Fast(segments, "segments must be a sequence");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    self->views = PyMem_Calloc((size_t)n + 1, sizeof(Py_buffer));
    self->scanner.image.segs = PyMem_Calloc((size_t)n + 1, sizeof(cs_segment));
    if (self->views == NULL || self->scanner.image.segs == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (add_segment(self, PySequence_Fast_GET_ITEM(seq, i)) < 0) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    if (cs_image_prepare(&self->scanner.image) < 0) {
        PyErr_SetString(PyExc_ValueError, "segments overlap");
        return -1;
    }
    return 0;
}

static int
kind_of_name(const char *name)
{
    for (int kind = 0; kind < CS_KIND_COUNT; kind++) {
        if (strcmp(kind_names[kind], name) == 0) {
            return kind;
        }
    }
    return -1;
}

/* {address: kind name} of the static types the symbols told. */
static int
add_known_kinds(ImageObject *self, PyObject *kinds)
{
    PyObject *key;
    PyObject *value;
    Py_ssize_t pos = 0;
    if (!PyDict_Check(kinds)) {
        PyErr_SetString(PyExc_TypeError, "kinds must be a dict");
        return -1;
    }
    if (cs_addrmap_init(&self->scanner.known_kinds, 64) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    while (PyDict_Next(kinds, &pos, &key, &value)) {
        unsigned long long addr = PyLong_AsUnsignedLongLong(key);
        const char *name = PyUnicode_AsUTF8(value);
        if ((addr == (unsigned long long)-1 && PyErr_Occurred())
            || name == NULL) {
            return -1;
        }
        int kind = kind_of_name(name);
        if (kind < 0) {
            PyErr_Format(PyExc_ValueError, "unknown kind %R", value);
            return -1;
        }
        if (cs_addrmap_put(&self->scanner.known_kinds, addr, (uint32_t)kind)
            < 0) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

static int
Image_init(ImageObject *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[]
        = {"segments", "minor", "runtime", "type_type", "kinds", NULL};
    PyObject *segments;
    int minor;
    unsigned long long runtime;
    unsigned long long type_type;
    PyObject *kinds;
    if (self->scanner.lay != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Image is already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiKKO", keywords, &segments,
                                     &minor, &runtime, &type_type, &kinds)) {
        return -1;
    }
    const cs_layout *lay = cs_layout_for(minor);
    if (lay == NULL) {
        PyErr_Format(PyExc_ValueError, "unsupported Python 3.%d", minor);
        return -1;
    }
    if (add_segments(self, segments) < 0 || add_known_kinds(self, kinds) < 0
        || cs_addrmap_init(&self->scanner.type_index, 1024) < 0) {
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        return -1;
    }
    self->scanner.layout = *lay;
    self->scanner.runtime = runtime;
    self->scanner.type_type = type_type;
    if (cs_debug_offsets_read(&self->scanner) < 0) {
        PyErr_SetString(PyExc_ValueError, self->scanner.error);
        return -1;
    }
    self->scanner.lay = &self->scanner.layout;
    return 0;
}

static int
ready(ImageObject *self)
{
    if (self->scanner.lay == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Image is not initialised");
        return 0;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Image is busy in another thread");
        return 0;
    }
    return 1;
}

/* ---- Image methods: the census ------------------------------------------ */

static PyObject *
census_stats(const cs_stats *stats)
{
    return Py_BuildValue(
        "{sKsKsKsKsKsKsKsKsKsK}", "immortal",
        (unsigned long long)stats->immortal, "marked_links",
        (unsigned long long)stats->marked_links, "interpreters",
        (unsigned long long)stats->interpreters, "gc_objects",
        (unsigned long long)stats->gc_objects, "scan_objects",
        (unsigned long long)stats->scan_objects, "scanned_bytes",
        (unsigned long long)stats->scanned_bytes, "broken_lists",
        (unsigned long long)stats->broken_lists, "bad_links",
        (unsigned long long)stats->bad_links, "bad_types",
        (unsigned long long)stats->bad_types, "static_types",
        (unsigned long long)stats->static_types);
}

static PyObject *
type_row(cs_scanner *s, cs_type *t)
{
    PyObject *name = cs_py_type_name(s, t);
    if (name == NULL) {
        return NULL;
    }
    return Py_BuildValue(
        "(KNKKKKOsK)", (unsigned long long)t->addr, name,
        (unsigned long long)t->count_gc, (unsigned long long)t->bytes_gc,
        (unsigned long long)t->count_scan, (unsigned long long)t->bytes_scan,
        cs_type_is_heap(t) ? Py_True : Py_False, kind_names[t->kind],
        (unsigned long long)t->count_immortal);
}

static PyObject *
census_rows(cs_scanner *s)
{
    PyObject *rows = PyList_New(0);
    for (size_t i = 0; rows != NULL && i < s->ntypes; i++) {
        cs_type *t = s->types[i];
        if (t->count_gc + t->count_scan == 0) {
            continue;
        }
        PyObject *row = type_row(s, t);
        if (row == NULL || PyList_Append(rows, row) < 0) {
            Py_XDECREF(row);
            Py_CLEAR(rows);
            break;
        }
        Py_DECREF(row);
    }
    return rows;
}

/* census() -> (rows, stats): rows are (type address, name, gc count, gc
   bytes, scan count, scan bytes, is a class, kind, immortal count). */
static PyObject *
Image_census(ImageObject *self, PyObject *Py_UNUSED(ignored))
{
    cs_scanner *s = &self->scanner;
    int result;
    if (!ready(self)) {
        return NULL;
    }
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS result = cs_census_run(s);
    Py_END_ALLOW_THREADS self->busy = 0;
    if (result < 0) {
        PyErr_SetString(scan_state.census_error, s->error);
        return NULL;
    }
    PyObject *rows = census_rows(s);
    PyObject *stats = rows == NULL ? NULL : census_stats(&s->stats);
    if (stats == NULL) {
        Py_XDECREF(rows);
        return NULL;
    }
    return Py_BuildValue("(NN)", rows, stats);
}

static int
parse_addr(PyObject *arg, uint64_t *addr)
{
    unsigned long long value = PyLong_AsUnsignedLongLong(arg);
    if (value == (unsigned long long)-1 && PyErr_Occurred()) {
        return -1;
    }
    *addr = value;
    return 0;
}

/* build_graph() -> {"objects", "reached", "patterns"} */
static PyObject *
Image_build_graph(ImageObject *self, PyObject *Py_UNUSED(ignored))
{
    cs_scanner *s = &self->scanner;
    int result;
    if (!ready(self)) {
        return NULL;
    }
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS result = cs_census_run(s);
    if (result == 0) {
        result = cs_graph_build(s);
    }
    Py_END_ALLOW_THREADS self->busy = 0;
    if (result < 0) {
        PyErr_SetString(scan_state.census_error, s->error);
        return NULL;
    }
    return Py_BuildValue("{sKsKsK}", "objects", (unsigned long long)s->nnodes,
                         "reached", (unsigned long long)s->graph->reached,
                         "patterns", (unsigned long long)s->graph->npatterns);
}

static int
graph_ready(ImageObject *self)
{
    if (!ready(self)) {
        return 0;
    }
    if (self->scanner.graph == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "call build_graph() first");
        return 0;
    }
    return 1;
}

static int
unreached_ready(ImageObject *self)
{
    cs_scanner *s = &self->scanner;
    int result;
    if (!graph_ready(self)) {
        return 0;
    }
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS result = cs_graph_build_unreached(s);
    Py_END_ALLOW_THREADS self->busy = 0;
    if (result < 0) {
        PyErr_SetString(scan_state.census_error, s->error);
        return 0;
    }
    return 1;
}

/* holders(type address, limit) -> [(pattern or None, count, bytes,
   representative address)], most objects first; pattern None groups
   the objects no root reaches. */
static PyObject *
Image_holders(ImageObject *self, PyObject *args)
{
    cs_scanner *s = &self->scanner;
    PyObject *type_arg;
    Py_ssize_t limit;
    uint64_t type_addr;
    if (!PyArg_ParseTuple(args, "On", &type_arg, &limit) || !graph_ready(self)
        || parse_addr(type_arg, &type_addr) < 0) {
        return NULL;
    }
    PyObject *result = PyList_New(0);
    uint32_t index = cs_addrmap_get(&s->type_index, type_addr);
    if (result == NULL || index == CS_NONE) {
        return result;
    }
    const cs_graph *g = s->graph;
    for (uint32_t i = g->type_groups[index];
         i < g->type_groups[index + 1] && PyList_GET_SIZE(result) < limit;
         i++) {
        const cs_group *group = &g->groups[i];
        uint64_t rep = group->pattern == CS_NONE
                           ? 0
                           : s->nodes[g->patterns[group->pattern].rep].addr;
        PyObject *item
            = group->pattern == CS_NONE
                  ? Py_BuildValue("(OKKK)", Py_None,
                                  (unsigned long long)group->count,
                                  (unsigned long long)group->bytes, 0ULL)
                  : Py_BuildValue("(IKKK)", group->pattern,
                                  (unsigned long long)group->count,
                                  (unsigned long long)group->bytes,
                                  (unsigned long long)rep);
        if (item == NULL || PyList_Append(result, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(result);
            return NULL;
        }
        Py_DECREF(item);
    }
    return result;
}

/* pattern_steps(pattern) -> [step], root first (see make_step). */
static PyObject *
Image_pattern_steps(ImageObject *self, PyObject *arg)
{
    cs_scanner *s = &self->scanner;
    if (!graph_ready(self)) {
        return NULL;
    }
    unsigned long id = PyLong_AsUnsignedLong(arg);
    if (PyErr_Occurred()) {
        return NULL;
    }
    const cs_graph *g = s->graph;
    PyObject *steps = PyList_New(0);
    for (size_t depth = 0; steps != NULL && id < g->npatterns; depth++) {
        const cs_pattern *p = &g->patterns[id];
        PyObject *step = depth > 100000
                             ? NULL
                             : cs_py_step(s, (cs_edge)p->edge, p->aux, p->aux2,
                                          p->rep, p->general);
        if (step == NULL || PyList_Insert(steps, 0, step) < 0) {
            Py_XDECREF(step);
            Py_CLEAR(steps);
            break;
        }
        Py_DECREF(step);
        id = p->parent;
    }
    return steps;
}

static int
lookup_node(cs_scanner *s, PyObject *arg, uint32_t *id)
{
    uint64_t addr;
    if (parse_addr(arg, &addr) < 0) {
        return -1;
    }
    *id = cs_graph_find(s, addr);
    return 0;
}

/* The exact step from the holder of object `id` to it. */
static PyObject *
exact_step(cs_scanner *s, uint32_t id)
{
    const cs_graph *g = s->graph;
    uint32_t holder = g->parent[id];
    cs_edge edge;
    uint64_t aux;
    uint64_t aux2;
    if (holder == CS_ROOT || holder == CS_NONE) {
        const cs_pattern *p = &g->patterns[g->pattern[id]];
        return cs_py_step(s, (cs_edge)p->edge, p->aux, p->aux2, id, 0);
    }
    if (cs_graph_edge(s, holder, id, &edge, &aux, &aux2) < 0) {
        const cs_pattern *p = &g->patterns[g->pattern[id]];
        return cs_py_step(s, (cs_edge)p->edge, p->aux, p->aux2, id,
                          p->general);
    }
    return cs_py_step(s, edge, aux, aux2, id, 0);
}

/* path(address) -> [step] from a root to the object, or None if no
   root reaches it (or it is not an object the census found). */
static PyObject *
Image_path(ImageObject *self, PyObject *arg)
{
    cs_scanner *s = &self->scanner;
    uint32_t id;
    if (!graph_ready(self) || lookup_node(s, arg, &id) < 0) {
        return NULL;
    }
    if (id == CS_NONE || s->graph->pattern[id] == CS_NONE) {
        Py_RETURN_NONE;
    }
    PyObject *steps = PyList_New(0);
    for (size_t depth = 0; steps != NULL && id < s->nnodes; depth++) {
        PyObject *step = depth > 100000 ? NULL : exact_step(s, id);
        if (step == NULL || PyList_Insert(steps, 0, step) < 0) {
            Py_XDECREF(step);
            Py_CLEAR(steps);
            break;
        }
        Py_DECREF(step);
        id = s->graph->parent[id];
    }
    return steps;
}

/* object_info(address) -> (type address, type name, bytes, reached) or
   None. */
static PyObject *
Image_object_info(ImageObject *self, PyObject *arg)
{
    cs_scanner *s = &self->scanner;
    uint32_t id;
    if (!graph_ready(self) || lookup_node(s, arg, &id) < 0) {
        return NULL;
    }
    if (id == CS_NONE) {
        Py_RETURN_NONE;
    }
    cs_type *t = s->types[s->nodes[id].type];
    PyObject *name = cs_py_type_name(s, t);
    if (name == NULL) {
        return NULL;
    }
    return Py_BuildValue(
        "(KNIO)", (unsigned long long)t->addr, name, s->nodes[id].size,
        s->graph->pattern[id] != CS_NONE ? Py_True : Py_False);
}

static PyObject *
chain_list(cs_scanner *s, const uint32_t *chain, size_t length)
{
    PyObject *list = PyList_New((Py_ssize_t)length);
    for (size_t i = 0; list != NULL && i < length; i++) {
        PyObject *addr = PyLong_FromUnsignedLongLong(s->nodes[chain[i]].addr);
        if (addr == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, addr);
    }
    return list;
}

/* referrers(address, limit) -> [address]: objects that refer to it (a
   pass over every reference). */
static PyObject *
Image_referrers(ImageObject *self, PyObject *args)
{
    cs_scanner *s = &self->scanner;
    PyObject *addr_arg;
    Py_ssize_t limit;
    uint32_t id;
    if (!PyArg_ParseTuple(args, "On", &addr_arg, &limit) || !graph_ready(self)
        || lookup_node(s, addr_arg, &id) < 0) {
        return NULL;
    }
    if (id == CS_NONE || limit <= 0) {
        return PyList_New(0);
    }
    size_t max = limit > 100000 ? 100000 : (size_t)limit;
    uint32_t *found = PyMem_Malloc(max * sizeof(uint32_t));
    if (found == NULL) {
        return PyErr_NoMemory();
    }
    size_t count;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS count = cs_graph_referrers_of(s, id, found, max);
    Py_END_ALLOW_THREADS self->busy = 0;
    PyObject *result = chain_list(s, found, count);
    PyMem_Free(found);
    return result;
}

/* climb(address) -> ([address], end): first referrers upwards from the
   object, and why the climb stopped ("reached", "no_referrer", "cycle",
   "too_deep"). */
static PyObject *
Image_climb(ImageObject *self, PyObject *arg)
{
    cs_scanner *s = &self->scanner;
    uint32_t id;
    uint32_t chain[CS_MAX_CLIMB];
    cs_chain_end end;
    if (!unreached_ready(self) || lookup_node(s, arg, &id) < 0) {
        return NULL;
    }
    if (id == CS_NONE) {
        Py_RETURN_NONE;
    }
    size_t length = cs_graph_climb(s, id, chain, CS_MAX_CLIMB, &end);
    PyObject *list = chain_list(s, chain, length);
    if (list == NULL) {
        return NULL;
    }
    return Py_BuildValue("(Ns)", list, end_names[end]);
}

/* unreached(type address, limit) -> [(count, bytes, representative, end,
   [addresses climbed from the representative])]. */
static PyObject *
Image_unreached(ImageObject *self, PyObject *args)
{
    cs_scanner *s = &self->scanner;
    PyObject *type_arg;
    Py_ssize_t limit;
    uint64_t type_addr;
    if (!PyArg_ParseTuple(args, "On", &type_arg, &limit)
        || parse_addr(type_arg, &type_addr) < 0 || !unreached_ready(self)) {
        return NULL;
    }
    uint32_t type = cs_addrmap_get(&s->type_index, type_addr);
    cs_unreached_group *groups = NULL;
    size_t ngroups = 0;
    if (type != CS_NONE
        && cs_graph_group_unreached(s, type, &groups, &ngroups) < 0) {
        free(groups);
        return PyErr_NoMemory();
    }
    PyObject *result = PyList_New(0);
    for (size_t i = 0; result != NULL && i < ngroups && (Py_ssize_t)i < limit;
         i++) {
        uint32_t chain[CS_MAX_CLIMB];
        cs_chain_end end;
        size_t length
            = cs_graph_climb(s, groups[i].rep, chain, CS_MAX_CLIMB, &end);
        PyObject *item
            = Py_BuildValue("(KKKsN)", (unsigned long long)groups[i].count,
                            (unsigned long long)groups[i].bytes,
                            (unsigned long long)s->nodes[groups[i].rep].addr,
                            end_names[end], chain_list(s, chain, length));
        if (item == NULL || PyList_Append(result, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(result);
        }
        Py_XDECREF(item);
    }
    free(groups);
    return result;
}

/* ---- small readers ------------------------------------------------------ */

/* read(address, size) -> bytes, or None if not wholly readable. */
static PyObject *
Image_read(ImageObject *self, PyObject *args)
{
    unsigned long long addr;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "Kn", &addr, &size) || !ready(self)) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "negative size");
        return NULL;
    }
    const uint8_t *p
        = cs_image_ptr(&self->scanner.image, addr, (uint64_t)size);
    if (p == NULL) {
        Py_RETURN_NONE;
    }
    return PyBytes_FromStringAndSize((const char *)p, size);
}

/* cs_py_type_name(address) -> the name of the type at that address, or None.
 */
static PyObject *
Image_type_name(ImageObject *self, PyObject *arg)
{
    uint64_t addr;
    if (!ready(self) || parse_addr(arg, &addr) < 0) {
        return NULL;
    }
    cs_type *t = cs_type_known(&self->scanner, addr);
    if (t == NULL) {
        Py_RETURN_NONE;
    }
    return cs_py_type_name(&self->scanner, t);
}

typedef struct {
    cs_scanner *s;
    uint64_t value;
} sys_module_ctx;

static int
find_sys(cs_scanner *s, uint64_t interp, void *ctx)
{
    sys_module_ctx *found = ctx;
    uint64_t modules = cs_word(&s->image, interp + s->lay->interp_modules);
    found->value = cs_dict_get(s, modules, "sys");
    return 1; /* the main interpreter is enough */
}

/* sys_str(name) -> the str sys.<name> of the main interpreter, or None. */
static PyObject *
Image_sys_str(ImageObject *self, PyObject *arg)
{
    cs_scanner *s = &self->scanner;
    const char *name = PyUnicode_AsUTF8(arg);
    if (name == NULL || !ready(self)) {
        return NULL;
    }
    sys_module_ctx found = {s, 0};
    cs_foreach_interpreter(s, find_sys, &found);
    if (found.value == 0) {
        Py_RETURN_NONE;
    }
    uint64_t dict = cs_word(&s->image, found.value + s->lay->module_dict);
    return cs_py_str(s, cs_dict_get(s, dict, name));
}

/* The offsets the target's _Py_DebugOffsets gave, by row field name. */
static PyObject *
debug_offsets_dict(cs_scanner *s)
{
    PyObject *offsets = PyDict_New();
    for (size_t i = 0; offsets != NULL && i < cs_debug_field_count(); i++) {
        if (s->target.fields_read == 0
            || cs_debug_field_position(&s->layout, i) <= 0) {
            continue;
        }
        PyObject *value = PyLong_FromLong(*cs_debug_field(&s->layout, i));
        if (value == NULL
            || PyDict_SetItemString(offsets, cs_debug_field_names[i], value)
                   < 0) {
            Py_XDECREF(value);
            Py_CLEAR(offsets);
            break;
        }
        Py_DECREF(value);
    }
    return offsets;
}

/* target() -> {"hexversion", "debug_offsets", "collector", "collecting",
   "gc_heads"}: what the target said about itself, and where its gc lists
   are (collecting and gc_heads: after census()). */
static PyObject *
Image_target(ImageObject *self, PyObject *Py_UNUSED(ignored))
{
    cs_scanner *s = &self->scanner;
    const uint64_t *heads = s->target.gc_heads;
    if (!ready(self)) {
        return NULL;
    }
    return Py_BuildValue(
        "{sKsNsssOs[KKKK]}", "hexversion",
        (unsigned long long)s->target.hexversion, "debug_offsets",
        debug_offsets_dict(s), "collector",
        s->target.incremental_gc ? "incremental" : "generational",
        "collecting", s->target.collecting ? Py_True : Py_False, "gc_heads",
        (unsigned long long)heads[0], (unsigned long long)heads[1],
        (unsigned long long)heads[2], (unsigned long long)heads[3]);
}

static PyMethodDef Image_methods[] = {
    {"target", (PyCFunction)Image_target, METH_NOARGS,
     "target() -> what the target says about itself."},
    {"census", (PyCFunction)Image_census, METH_NOARGS,
     "census() -> (rows, stats): find and count every object."},
    {"build_graph", (PyCFunction)Image_build_graph, METH_NOARGS,
     "build_graph() -> stats: paths from the roots, holder groups."},
    {"holders", (PyCFunction)Image_holders, METH_VARARGS,
     "holders(type, limit) -> [(pattern, count, bytes, representative)]."},
    {"pattern_steps", (PyCFunction)Image_pattern_steps, METH_O,
     "pattern_steps(pattern) -> [step], root first."},
    {"path", (PyCFunction)Image_path, METH_O,
     "path(address) -> [step] from a root, or None."},
    {"object_info", (PyCFunction)Image_object_info, METH_O,
     "object_info(address) -> (type, name, bytes, reached) or None."},
    {"referrers", (PyCFunction)Image_referrers, METH_VARARGS,
     "referrers(address, limit) -> [address]."},
    {"climb", (PyCFunction)Image_climb, METH_O,
     "climb(address) -> ([address], end)."},
    {"unreached", (PyCFunction)Image_unreached, METH_VARARGS,
     "unreached(type, limit) -> [(count, bytes, rep, end, chain)]."},
    {"read", (PyCFunction)Image_read, METH_VARARGS,
     "read(address, size) -> bytes or None."},
    {"type_name", (PyCFunction)Image_type_name, METH_O,
     "cs_py_type_name(address) -> str or None."},
    {"sys_str", (PyCFunction)Image_sys_str, METH_O,
     "sys_str(name) -> the str sys.<name>, or None."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ImageType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "pyleakhunt.census._scan.Image",
    .tp_basicsize = sizeof(ImageObject),
    .tp_dealloc = (destructor)Image_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Image(segments, minor, runtime, type_type, kinds): a memory "
              "image to take a census of.",
    .tp_methods = Image_methods,
    .tp_init = (initproc)Image_init,
    .tp_new = PyType_GenericNew,
};

/* ---- Pause -------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD cs_pause pause;
    int paused;
} PauseObject;

static int
Pause_init(PauseObject *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"pid", "timeout", NULL};
    int pid;
    double timeout = 5.0;
    int result;
    if (self->paused) {
        PyErr_SetString(PyExc_RuntimeError, "already paused");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i|d", keywords, &pid,
                                     &timeout)) {
        return -1;
    }
    Py_BEGIN_ALLOW_THREADS result
        = cs_pause_begin(&self->pause, (pid_t)pid, timeout);
    Py_END_ALLOW_THREADS if (result < 0)
    {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->paused = 1;
    return 0;
}

static PyObject *
Pause_resume(PauseObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->paused) {
        cs_pause_end(&self->pause);
        self->paused = 0;
    }
    Py_RETURN_NONE;
}

static PyObject *
Pause_threads(PauseObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(self->paused ? self->pause.nthreads : 0);
}

static void
Pause_dealloc(PauseObject *self)
{
    if (self->paused) {
        cs_pause_end(&self->pause);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Pause_methods[] = {
    {"resume", (PyCFunction)Pause_resume, METH_NOARGS,
     "resume(): let every thread go on (idempotent)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Pause_getset[] = {
    {"threads", (getter)Pause_threads, NULL, "threads held stopped", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PauseType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "pyleakhunt.census._scan.Pause",
    .tp_basicsize = sizeof(PauseObject),
    .tp_dealloc = (destructor)Pause_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Pause(pid, timeout=5.0): stop every thread of a process "
              "(ptrace seize + interrupt) until resume().",
    .tp_methods = Pause_methods,
    .tp_getset = Pause_getset,
    .tp_init = (initproc)Pause_init,
    .tp_new = PyType_GenericNew,
};

/* ---- copying a live process --------------------------------------------- */

static int
writable_view(PyObject *buffer, Py_buffer *view)
{
    return PyObject_GetBuffer(buffer, view, PyBUF_WRITABLE);
}

/* read_process(pid, address, buffer) -> bytes copied: fills the writable
   buffer with the process's memory at address (unreadable pages are
   skipped).  Raises OSError if the process cannot be read at all. */
static PyObject *
scan_read_process(PyObject *Py_UNUSED(module), PyObject *args)
{
    int pid;
    unsigned long long address;
    PyObject *buffer;
    Py_buffer view;
    int64_t copied;
    if (!PyArg_ParseTuple(args, "iKO", &pid, &address, &buffer)
        || writable_view(buffer, &view) < 0) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS copied
        = cs_read_process((pid_t)pid, address, view.buf, (uint64_t)view.len);
    Py_END_ALLOW_THREADS PyBuffer_Release(&view);
    if (copied < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLongLong(copied);
}

/* prefault(buffer): makes every page of a writable buffer resident. */
static PyObject *
scan_prefault(PyObject *Py_UNUSED(module), PyObject *buffer)
{
    Py_buffer view;
    if (writable_view(buffer, &view) < 0) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS cs_prefault(view.buf, (uint64_t)view.len);
    Py_END_ALLOW_THREADS PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static int
set_int_item(PyObject *dict, const char *key, long value)
{
    PyObject *item = PyLong_FromLong(value);
    int result = item == NULL ? -1 : PyDict_SetItemString(dict, key, item);
    Py_XDECREF(item);
    return result;
}

/* debug_map(minor) -> {field: (byte offset in _Py_DebugOffsets, the
   row's value)}, plus "table_size", "version", "free_threaded": what
   layout.c knows of 3.<minor>'s table (empty before 3.13).  For tests
   and for a look at what is read from the target. */
static PyObject *
scan_debug_map(PyObject *Py_UNUSED(module), PyObject *arg)
{
    long minor = PyLong_AsLong(arg);
    if (minor == -1 && PyErr_Occurred()) {
        return NULL;
    }
    const cs_layout *lay = cs_layout_for((int)minor);
    if (lay == NULL) {
        return PyErr_Format(PyExc_ValueError, "unsupported Python 3.%ld",
                            minor);
    }
    PyObject *map = PyDict_New();
    if (map == NULL || lay->dbg.table_size <= 0) {
        return map;
    }
    if (set_int_item(map, "table_size", lay->dbg.table_size) < 0
        || set_int_item(map, "version", lay->dbg.version) < 0
        || set_int_item(map, "free_threaded", lay->dbg.free_threaded) < 0) {
        Py_DECREF(map);
        return NULL;
    }
    cs_layout row = *lay;
    for (size_t i = 0; i < cs_debug_field_count(); i++) {
        int32_t position = cs_debug_field_position(lay, i);
        if (position <= 0) {
            continue;
        }
        PyObject *pair
            = Py_BuildValue("(ii)", position, *cs_debug_field(&row, i));
        if (pair == NULL
            || PyDict_SetItemString(map, cs_debug_field_names[i], pair) < 0) {
            Py_XDECREF(pair);
            Py_DECREF(map);
            return NULL;
        }
        Py_DECREF(pair);
    }
    return map;
}

static PyMethodDef scan_functions[] = {
    {"debug_map", scan_debug_map, METH_O,
     "debug_map(minor) -> {field: (offset in _Py_DebugOffsets, row "
     "value)}."},
    {"read_process", scan_read_process, METH_VARARGS,
     "read_process(pid, address, buffer) -> bytes copied."},
    {"prefault", scan_prefault, METH_O,
     "prefault(buffer): fault in every page of a writable buffer."},
    {NULL, NULL, 0, NULL},
};

/* ---- the module --------------------------------------------------------- */

static int
add_type(PyObject *module, PyTypeObject *type, const char *name)
{
    if (PyType_Ready(type) < 0) {
        return -1;
    }
    Py_INCREF(type);
    if (PyModule_AddObject(module, name, (PyObject *)type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}

static PyObject *
kind_list(void)
{
    PyObject *kinds = PyTuple_New(CS_KIND_COUNT);
    for (int i = 0; kinds != NULL && i < CS_KIND_COUNT; i++) {
        PyObject *name = PyUnicode_FromString(kind_names[i]);
        if (name == NULL) {
            Py_CLEAR(kinds);
            break;
        }
        PyTuple_SET_ITEM(kinds, i, name);
    }
    return kinds;
}

static PyObject *
supported_minors(void)
{
    PyObject *minors = PyList_New(0);
    for (int minor = 0; minors != NULL && minor < 100; minor++) {
        if (cs_layout_for(minor) == NULL) {
            continue;
        }
        PyObject *value = PyLong_FromLong(minor);
        if (value == NULL || PyList_Append(minors, value) < 0) {
            Py_XDECREF(value);
            Py_CLEAR(minors);
        }
        Py_XDECREF(value);
    }
    return minors;
}

static struct PyModuleDef scan_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pyleakhunt.census._scan",
    .m_doc = "The census scanner: reads a memory image of a CPython "
             "process, counts its objects by type and finds who holds them.",
    .m_size = -1,
    .m_methods = scan_functions,
};

PyMODINIT_FUNC
PyInit__scan(void)
{
    PyObject *module = PyModule_Create(&scan_module);
    if (module == NULL) {
        return NULL;
    }
    scan_state.census_error = PyErr_NewException(
        "pyleakhunt.census._scan.CensusError", NULL, NULL);
    if (scan_state.census_error == NULL
        || PyModule_AddObject(module, "CensusError",
                              cs_py_new_ref(scan_state.census_error))
               < 0
        || add_type(module, &ImageType, "Image") < 0
        || add_type(module, &PauseType, "Pause") < 0
        || PyModule_AddObject(module, "KINDS", kind_list()) < 0
        || PyModule_AddObject(module, "MINORS", supported_minors()) < 0
        || PyModule_AddIntConstant(module, "SEG_WRITABLE", CS_SEG_WRITABLE) < 0
        || PyModule_AddIntConstant(module, "SEG_FILE", CS_SEG_FILE) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
