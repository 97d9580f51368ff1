/* topython.h - target objects and paths as Python values.
 *
 * Needs the GIL (it builds Python objects); reads the target only through
 * the scanner's bounds-checked image.
 */
#ifndef PYLEAKHUNT_CENSUS_TOPYTHON_H
#define PYLEAKHUNT_CENSUS_TOPYTHON_H

#include <Python.h>

#include "objects.h"
#include "scanner.h"

/* A new reference to `obj` (Py_NewRef is 3.10+). */
PyObject *cs_py_new_ref(PyObject *obj);

/* The str at `addr` as a Python str, or None if it is not a valid str. */
PyObject *cs_py_str(cs_scanner *s, uint64_t addr);

/* The C string at `addr` (at most 512 bytes), or None. */
PyObject *cs_py_cstr(cs_scanner *s, uint64_t addr);

/* "module.Qualname" for a class, tp_name for a static type. */
PyObject *cs_py_type_name(cs_scanner *s, cs_type *t);

/* A step of a path to object `id`: (edge, label, address, type name,
   class name or None, generalised).  See paths.py for what each edge
   means.  Needs the graph. */
PyObject *cs_py_step(cs_scanner *s, cs_edge edge, uint64_t aux, uint64_t aux2,
                     uint32_t id, int general);

#endif
