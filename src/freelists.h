#ifndef PYLEAKHUNT_FREELISTS_H
#define PYLEAKHUNT_FREELISTS_H

/* Keep CPython's free lists of dicts, lists, tuples and floats empty (on)
   or let them fill again (off), so that every such object is allocated at
   its own line; on 3.10 also move the dead frame a code object keeps to
   the free list of frames.  From 3.13, where the reference tracer sees
   objects reused, only the free list of dicts' key tables (freelists.c).
   Returns 1.  Needs the GIL. */
int lh_freelists_keep_empty(int on);

/* Whether the free lists are kept empty now. */
int lh_freelists_kept_empty(void);

/* The size of the block that holds `op`, when its type is one whose dead
   objects CPython keeps on free lists for reuse (dicts, lists, tuples,
   floats, ints and complex numbers, exactly those types), as CPython
   allocated it; else 0.  Always 0 before 3.13, where the reference tracer
   does not exist.  Needs nothing but a live object. */
size_t lh_freelists_block_size(PyObject *op);

/* The tracer's own dead objects (freelists.c): the lengths of the
   interpreter's free lists, into `lengths` (at most `most`); returns how
   many, 0 where this is not done (before 3.13).  Then, after the
   tracer's work, free what each list holds beyond its length then.
   GIL. */
size_t lh_freelists_lengths(Py_ssize_t *lengths, size_t most);
void lh_freelists_trim(const Py_ssize_t *lengths, size_t n);

#endif
