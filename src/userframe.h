/* userframe.h - which code is the user's, for the tracer.
 *
 * A leak is nearly always caused by a line of the program being debugged,
 * even when the allocation happens inside the standard library or an
 * installed package.  With few frames recorded (the web integrations
 * record one), that line may not be among them.  When the rule below is
 * set and none of the captured frames of a tagged allocation is the
 * user's, the tracer also records the first frame below them that is
 * (hooks.c, "the user's frame", says when), so that reports can show the
 * user's line first.
 *
 * The rule is pyleakhunt/userframe.py's, given its roots by Python; see
 * lh_user_file() for where the two differ.
 */
#ifndef PYLEAKHUNT_USERFRAME_H
#define PYLEAKHUNT_USERFRAME_H

#include <Python.h>
#include <stdint.h>

struct lh_user_entry;

typedef struct {
    /* All of it set and read with the main interpreter's GIL held. */
    int enabled;
    /* Code objects classified so far (userframe.c). */
    struct lh_user_entry *cache;
    /* The standard library's and installed packages' roots, and
       pyleakhunt's own directory and demo, as UTF-8. */
    char **roots;
    Py_ssize_t nroots;
    char *own_dir;
    char *demo_file;
} lh_user_rule;

/* Set the rule from Python: `roots` a tuple of str, `own_dir` and
   `demo_file` str; or turn it off with roots == Py_None.  The main
   interpreter's GIL held, not from an allocator hook.  Returns -1 with an
   exception set. */
int lh_user_rule_set(lh_user_rule *rule, PyObject *roots, PyObject *own_dir,
                     PyObject *demo_file);

/* What lh_user_code() and lh_user_file() tell of code: a library's, a
   file of the user's, or the user's code compiled from a string (named
   "<string>" or the like: namedtuple's __new__, dataclasses' __init__,
   python -c), which gives way to a file of the user's below it. */
enum { LH_CODE_LIBRARY = 0, LH_CODE_USER = 1, LH_CODE_USER_STRING = 2 };

/* Whether `code` (a code object) is the user's (LH_CODE_*); `rule` must
   be enabled.
   The main interpreter's GIL held.  Never allocates nor raises: it runs in
   allocator hooks, with the tracer's lock held. */
int lh_user_code(lh_user_rule *rule, PyObject *code);

/* The classification itself, on a file name in UTF-8 (LH_CODE_*). */
int lh_user_file(const lh_user_rule *rule, const char *name);

#endif /* PYLEAKHUNT_USERFRAME_H */
