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

#endif
