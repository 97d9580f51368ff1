/* freethreaded.c - what pyleakhunt._core is on a free-threaded CPython.
 *
 * The tracer relies on the GIL: its lock's fast side, the ContextVar
 * cache it reads for tags (absent without the GIL), and the frame walk
 * from allocator hooks.  None of that is safe in a free-threaded build
 * (Py_GIL_DISABLED), so setup.py compiles this file alone there: the
 * package then builds, and importing it says why it cannot run, instead
 * of a compiler error that hides the reason.
 */
#include <Python.h>

#define LH_FREE_THREADED_MESSAGE                                            \
    "pyleakhunt: free-threaded builds are not supported yet "               \
    "(this CPython was built with --disable-gil); use a standard "          \
    "(GIL) build of CPython 3.10 to 3.15"

PyMODINIT_FUNC
PyInit__core(void)
{
    PyErr_SetString(PyExc_ImportError, LH_FREE_THREADED_MESSAGE);
    return NULL;
}
