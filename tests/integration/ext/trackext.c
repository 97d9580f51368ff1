/* trackext.c - a test extension that reports its own allocations to
 * tracemalloc through PyTraceMalloc_Track/Untrack, as numpy does.
 *
 * tests/test_extension_track.py compiles it under several names and
 * linking modes (LH_MODNAME), so that each test can import a copy no
 * earlier test has loaded.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef LH_MODNAME
#define LH_MODNAME _lh_trackext
#endif
#define LH_STR2(x) #x
#define LH_STR(x) LH_STR2(x)
#define LH_CAT2(a, b) a##b
#define LH_CAT(a, b) LH_CAT2(a, b)

static PyObject *
address(void *ptr)
{
    return PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)ptr);
}

/* alloc(domain, size) -> address: malloc() and report the block. */
static PyObject *
ext_alloc(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned int domain;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "In", &domain, &size)) {
        return NULL;
    }
    void *ptr = malloc((size_t)size);
    if (ptr == NULL) {
        return PyErr_NoMemory();
    }
    memset(ptr, 1, (size_t)size);
    PyTraceMalloc_Track(domain, (uintptr_t)ptr, (size_t)size);
    return address(ptr);
}

/* release(domain, address): report the block gone and free() it. */
static PyObject *
ext_release(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned int domain;
    unsigned long long ptr;
    if (!PyArg_ParseTuple(args, "IK", &domain, &ptr)) {
        return NULL;
    }
    PyTraceMalloc_Untrack(domain, (uintptr_t)ptr);
    free((void *)(uintptr_t)ptr);
    Py_RETURN_NONE;
}

/* raw_alloc(domain, size): PyMem_RawMalloc() and report the block too,
   as numpy 2.5 is said to do: the same memory reaches a tracer twice. */
static PyObject *
ext_raw_alloc(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned int domain;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "In", &domain, &size)) {
        return NULL;
    }
    void *ptr = PyMem_RawMalloc((size_t)size);
    if (ptr == NULL) {
        return PyErr_NoMemory();
    }
    PyTraceMalloc_Track(domain, (uintptr_t)ptr, (size_t)size);
    return address(ptr);
}

static PyObject *
ext_raw_release(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned int domain;
    unsigned long long ptr;
    if (!PyArg_ParseTuple(args, "IK", &domain, &ptr)) {
        return NULL;
    }
    PyTraceMalloc_Untrack(domain, (uintptr_t)ptr);
    PyMem_RawFree((void *)(uintptr_t)ptr);
    Py_RETURN_NONE;
}

/* track(domain, address, size) -> int: the bare call and its result. */
static PyObject *
ext_track(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned int domain;
    unsigned long long ptr;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "IKn", &domain, &ptr, &size)) {
        return NULL;
    }
    return PyLong_FromLong(
        PyTraceMalloc_Track(domain, (uintptr_t)ptr, (size_t)size));
}

static PyObject *
ext_untrack(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned int domain;
    unsigned long long ptr;
    if (!PyArg_ParseTuple(args, "IK", &domain, &ptr)) {
        return NULL;
    }
    return PyLong_FromLong(PyTraceMalloc_Untrack(domain, (uintptr_t)ptr));
}

/* ---- reporting from threads that do not hold the GIL ---------------- */

typedef struct {
    pthread_t thread;
    unsigned int domain;
    size_t size;
    Py_ssize_t count;
    void **kept;      /* count / 2 blocks, still reported */
    Py_ssize_t nkept;
    Py_ssize_t failures; /* Track calls that did not return 0 */
} worker;

/* Reports `count` blocks; keeps every other one, releases the rest. */
static void *
work(void *arg)
{
    worker *w = arg;
    for (Py_ssize_t i = 0; i < w->count; i++) {
        void *ptr = malloc(w->size);
        if (ptr == NULL) {
            w->failures++;
            continue;
        }
        if (PyTraceMalloc_Track(w->domain, (uintptr_t)ptr, w->size) != 0) {
            w->failures++;
        }
        if (i % 2 == 0 && w->nkept < w->count / 2) {
            w->kept[w->nkept++] = ptr;
        }
        else {
            PyTraceMalloc_Untrack(w->domain, (uintptr_t)ptr);
            free(ptr);
        }
    }
    return NULL;
}

static PyObject *
workers_result(worker *workers, int nthreads)
{
    PyObject *kept = PyList_New(0);
    Py_ssize_t failures = 0;
    for (int t = 0; t < nthreads; t++) {
        failures += workers[t].failures;
        for (Py_ssize_t i = 0; kept != NULL && i < workers[t].nkept; i++) {
            PyObject *item = address(workers[t].kept[i]);
            if (item == NULL || PyList_Append(kept, item) < 0) {
                Py_CLEAR(kept);
            }
            Py_XDECREF(item);
        }
        free(workers[t].kept);
    }
    return kept ? Py_BuildValue("(Nn)", kept, failures) : NULL;
}

/* track_in_threads(domain, size, nthreads, count) -> (kept, failures):
   `nthreads` threads, none of which ever holds the GIL, each report
   `count` blocks and keep half of them; the caller releases those. */
static PyObject *
ext_track_in_threads(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned int domain;
    Py_ssize_t size, count;
    int nthreads;
    if (!PyArg_ParseTuple(args, "Inin", &domain, &size, &nthreads, &count)
        || nthreads < 1 || nthreads > 64) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "1 to 64 threads");
        }
        return NULL;
    }
    worker workers[64];
    memset(workers, 0, sizeof(workers));
    for (int t = 0; t < nthreads; t++) {
        workers[t] = (worker){.domain = domain, .size = (size_t)size,
                              .count = count};
        workers[t].kept = calloc((size_t)count / 2 + 1, sizeof(void *));
        if (workers[t].kept == NULL) {
            while (t-- > 0) {
                free(workers[t].kept);
            }
            return PyErr_NoMemory();
        }
    }
    int started = 0;
    Py_BEGIN_ALLOW_THREADS
    for (; started < nthreads; started++) {
        if (pthread_create(&workers[started].thread, NULL, work,
                           &workers[started]) != 0) {
            break;
        }
    }
    for (int t = 0; t < started; t++) {
        pthread_join(workers[t].thread, NULL);
    }
    Py_END_ALLOW_THREADS
    if (started < nthreads) {
        PyErr_SetString(PyExc_OSError, "pthread_create failed");
        return NULL;
    }
    return workers_result(workers, nthreads);
}

static PyMethodDef methods[] = {
    {"alloc", ext_alloc, METH_VARARGS, "malloc() and Track."},
    {"release", ext_release, METH_VARARGS, "Untrack and free()."},
    {"raw_alloc", ext_raw_alloc, METH_VARARGS, "PyMem_RawMalloc() and Track."},
    {"raw_release", ext_raw_release, METH_VARARGS,
     "Untrack and PyMem_RawFree()."},
    {"track", ext_track, METH_VARARGS, "PyTraceMalloc_Track()."},
    {"untrack", ext_untrack, METH_VARARGS, "PyTraceMalloc_Untrack()."},
    {"track_in_threads", ext_track_in_threads, METH_VARARGS,
     "Track from threads without the GIL."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, LH_STR(LH_MODNAME),
    "Calls PyTraceMalloc_Track/Untrack, for pyleakhunt's tests.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
LH_CAT(PyInit_, LH_MODNAME)(void)
{
    return PyModule_Create(&module);
}
