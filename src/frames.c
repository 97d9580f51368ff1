/* frames.c - walk Python stacks; everything that is version specific.
 *
 * From 3.11 on, frames live in the interpreter's internal structures
 * (_PyInterpreterFrame) and a PyFrameObject is only created on demand.
 * Creating one from an allocator hook would allocate from inside the hook
 * and cost far more than the walk itself, so the walk reads the internal
 * frames directly.  That needs the internal headers, hence Py_BUILD_CORE,
 * which is defined in this file only.
 */
#define Py_BUILD_CORE 1
#include <Python.h>

#include <internal/pycore_gc.h>
#if PY_VERSION_HEX >= 0x030B0000
#include <internal/pycore_frame.h>
#else
#include <frameobject.h>
#endif

#include "frames.h"

#define LH_TOTAL_NFRAME_MAX UINT16_MAX

PyThreadState *
lh_frames_gil_holder(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    /* The current thread state is thread local from 3.12 on, and set only
       while the thread holds the GIL (is "attached"). */
    return _PyThreadState_UncheckedGet();
#else
    /* Before 3.12 the "current" thread state is the GIL holder, whoever it
       is; compare it with this thread's own state.  PyGILState_Check()
       would do the same, but answers 1 unconditionally once a
       subinterpreter exists. */
    PyThreadState *holder = _PyThreadState_UncheckedGet();
    if (holder == NULL || holder != PyGILState_GetThisThreadState()) {
        return NULL;
    }
    return holder;
#endif
}

PyThreadState *
lh_frames_tstate(void)
{
    return _PyThreadState_UncheckedGet();
}

#if PY_VERSION_HEX >= 0x030B0000

static _PyInterpreterFrame *
top_frame(PyThreadState *tstate)
{
#if PY_VERSION_HEX >= 0x030D0000
    return tstate->current_frame;
#else
    return tstate->cframe->current_frame;
#endif
}

/* Frames that have not started running their code (and, on 3.12+, the
   shim frames the interpreter pushes for C calls) are not part of the
   Python stack a user sees. */
static int
is_visible(_PyInterpreterFrame *frame)
{
#if PY_VERSION_HEX >= 0x030D0000
    if (frame->owner == FRAME_OWNED_BY_CSTACK
        || !PyCode_Check(frame->f_executable)) {
        return 0;
    }
#endif
    return !_PyFrame_IsIncomplete(frame);
}

static PyCodeObject *
frame_code(_PyInterpreterFrame *frame)
{
#if PY_VERSION_HEX >= 0x030D0000
    return (PyCodeObject *)frame->f_executable;
#else
    return frame->f_code;
#endif
}

int
lh_frames_capture(PyThreadState *tstate, lh_frame *buf, int max,
                  uint16_t *total)
{
    int n = 0;
    unsigned int depth = 0;
    for (_PyInterpreterFrame *f = top_frame(tstate); f != NULL;
         f = f->previous) {
        if (!is_visible(f)) {
            continue;
        }
        if (n < max) {
            buf[n].code = (PyObject *)frame_code(f);
            buf[n].lasti = _PyInterpreterFrame_LASTI(f);
            buf[n].padding = 0;
            n++;
        }
        if (++depth == LH_TOTAL_NFRAME_MAX) {
            break;
        }
    }
    *total = (uint16_t)depth;
    return n;
}

int
lh_frame_lineno(const lh_frame *frame)
{
    PyCodeObject *code = (PyCodeObject *)frame->code;
    int line = PyCode_Addr2Line(code, frame->lasti * (int)sizeof(_Py_CODEUNIT));
    return line < 0 ? 0 : line;
}

#else /* 3.9 and 3.10: frames are PyFrameObjects */

int
lh_frames_capture(PyThreadState *tstate, lh_frame *buf, int max,
                  uint16_t *total)
{
    int n = 0;
    unsigned int depth = 0;
    for (PyFrameObject *f = tstate->frame; f != NULL; f = f->f_back) {
        if (n < max) {
            buf[n].code = (PyObject *)f->f_code;
            buf[n].lasti = f->f_lasti;
            buf[n].padding = 0;
            n++;
        }
        if (++depth == LH_TOTAL_NFRAME_MAX) {
            break;
        }
    }
    *total = (uint16_t)depth;
    return n;
}

int
lh_frame_lineno(const lh_frame *frame)
{
    PyCodeObject *code = (PyCodeObject *)frame->code;
#if PY_VERSION_HEX >= 0x030A0000
    /* 3.10 counts f_lasti in code units, 3.9 in bytes. */
    int line = PyCode_Addr2Line(code, frame->lasti * (int)sizeof(_Py_CODEUNIT));
#else
    int line = PyCode_Addr2Line(code, frame->lasti);
#endif
    return line < 0 ? 0 : line;
}

#endif

PyObject *
lh_frame_filename(const lh_frame *frame)
{
    PyObject *name = ((PyCodeObject *)frame->code)->co_filename;
    if (name == NULL || !PyUnicode_Check(name)) {
        return NULL;
    }
    Py_INCREF(name);
    return name;
}

uintptr_t
lh_object_block(PyObject *obj)
{
    PyTypeObject *type = Py_TYPE(obj);
    size_t header = 0;
    if (PyType_IS_GC(type)) {
        header += sizeof(PyGC_Head);
    }
#if PY_VERSION_HEX >= 0x030C0000
    /* Managed dict and weakref pointers sit before the GC header. */
    if (PyType_HasFeature(type, Py_TPFLAGS_MANAGED_DICT)
        || PyType_HasFeature(type, Py_TPFLAGS_MANAGED_WEAKREF)) {
        header += 2 * sizeof(PyObject *);
    }
#elif PY_VERSION_HEX >= 0x030B0000
    if (PyType_HasFeature(type, Py_TPFLAGS_MANAGED_DICT)) {
        header += 2 * sizeof(PyObject *);
    }
#endif
    return (uintptr_t)obj - header;
}
