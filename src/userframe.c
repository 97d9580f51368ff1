/* userframe.c - which code is the user's (see userframe.h). */
#include "userframe.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/* The cache of classes (lh_user_code) is an open-addressed table of code
   objects, which it keeps alive so that an address is never another code
   object's.  Not the code objects' own co_extra slots: 3.14 keeps some
   code objects in read-only memory (the __init__ shim's), and writing a
   slot there crashes.  A code object that finds no room is classified
   again each time. */
#define LH_USER_CACHE_SIZE 4096u
#define LH_USER_PROBES 8u

struct lh_user_entry {
    PyObject *code; /* a strong reference, or NULL */
    int user;
};

/* ---- the rule, on a file name ------------------------------------------ */

static int
is_sep(char c)
{
    return c == '/' || c == '\\';
}

static int
starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* `path` is `root` or below it. */
static int
under(const char *path, const char *root)
{
    size_t n = strlen(root);
    return n > 0 && strncmp(path, root, n) == 0 && is_sep(path[n]);
}

/* A directory named site-packages or dist-packages holds the file. */
static int
in_package_dir(const char *name)
{
    static const char *const dirs[] = {"site-packages", "dist-packages"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        size_t n = strlen(dirs[i]);
        for (const char *p = strstr(name, dirs[i]); p != NULL;
             p = strstr(p + 1, dirs[i])) {
            if ((p == name || is_sep(p[-1])) && is_sep(p[n])) {
                return 1;
            }
        }
    }
    return 0;
}

static const char *
skip_digits(const char *p)
{
    if (!isdigit((unsigned char)*p)) {
        return NULL;
    }
    while (isdigit((unsigned char)*p)) {
        p++;
    }
    return p;
}

/* "/lib/python3.11/" or "/lib64/python3.13t/" of any installation, in any
   case: userframe.py's _LIB_PYTHON. */
static int
in_lib_python(const char *name)
{
    for (const char *p = name; *p != '\0'; p++) {
        if (!is_sep(*p) || strncasecmp(p + 1, "lib", 3) != 0) {
            continue;
        }
        const char *q = p + 4;
        if (strncmp(q, "64", 2) == 0) {
            q += 2;
        }
        if (!is_sep(*q) || strncasecmp(q + 1, "python", 6) != 0) {
            continue;
        }
        q = skip_digits(q + 7);
        if (q == NULL || *q != '.' || (q = skip_digits(q + 1)) == NULL) {
            continue;
        }
        if (*q == 't' || *q == 'T') {
            q++;
        }
        if (is_sep(*q)) {
            return 1;
        }
    }
    return 0;
}

/* userframe.py's _classify(), but on the name as the code object has it:
   Python normalizes the path first ("a/../b"), which code objects' names
   rarely need.  A name classified differently only changes which frames
   are recorded; reports classify again in Python. */
int
lh_user_file(const lh_user_rule *rule, const char *name)
{
    if (name[0] == '<') {
        /* <frozen importlib._bootstrap> is the standard library; code run
           from a string is the user's. */
        if (starts_with(name, "<frozen ") || strcmp(name, "<unknown>") == 0) {
            return LH_CODE_LIBRARY;
        }
        return LH_CODE_USER_STRING;
    }
    if (strcmp(name, "__init__") == 0) {
        /* 3.13+: the interpreter's frame that a class's Python __init__
           runs under (_Py_InitCleanup, line 0).  No file is named so. */
        return LH_CODE_LIBRARY;
    }
    if (rule->own_dir != NULL && under(name, rule->own_dir)
        && (rule->demo_file == NULL || strcmp(name, rule->demo_file) != 0)) {
        return LH_CODE_LIBRARY;
    }
    if (in_package_dir(name)) {
        return LH_CODE_LIBRARY;
    }
    for (Py_ssize_t i = 0; i < rule->nroots; i++) {
        if (under(name, rule->roots[i])) {
            return LH_CODE_LIBRARY;
        }
    }
    return in_lib_python(name) ? LH_CODE_LIBRARY : LH_CODE_USER;
}

/* ---- setting the rule -------------------------------------------------- */

static char *
utf8_copy(PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "set_user_frames() takes str paths");
        return NULL;
    }
    Py_ssize_t size;
    const char *data = PyUnicode_AsUTF8AndSize(text, &size);
    if (data == NULL) {
        return NULL;
    }
    char *copy = PyMem_RawMalloc((size_t)size + 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(copy, data, (size_t)size + 1);
    return copy;
}

/* Release what `rule` holds (a rule no hook can see any more). */
static void
rule_free(lh_user_rule *rule)
{
    if (rule->cache != NULL) {
        for (size_t i = 0; i < LH_USER_CACHE_SIZE; i++) {
            Py_XDECREF(rule->cache[i].code);
        }
        PyMem_RawFree(rule->cache);
        rule->cache = NULL;
    }
    for (Py_ssize_t i = 0; i < rule->nroots; i++) {
        PyMem_RawFree(rule->roots[i]);
    }
    PyMem_RawFree(rule->roots);
    PyMem_RawFree(rule->own_dir);
    PyMem_RawFree(rule->demo_file);
    rule->roots = NULL;
    rule->nroots = 0;
    rule->own_dir = NULL;
    rule->demo_file = NULL;
}

int
lh_user_rule_set(lh_user_rule *rule, PyObject *roots, PyObject *own_dir,
                 PyObject *demo_file)
{
    if (roots == Py_None) {
        lh_user_rule old = *rule;
        *rule = (lh_user_rule){0};
        rule_free(&old);
        return 0;
    }
    if (!PyTuple_Check(roots)) {
        PyErr_SetString(PyExc_TypeError, "set_user_frames() takes a tuple of roots");
        return -1;
    }
    lh_user_rule next = {0};
    next.nroots = PyTuple_GET_SIZE(roots);
    next.roots = PyMem_RawCalloc((size_t)next.nroots + 1, sizeof(char *));
    if (next.roots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < next.nroots; i++) {
        if ((next.roots[i] = utf8_copy(PyTuple_GET_ITEM(roots, i))) == NULL) {
            rule_free(&next);
            return -1;
        }
    }
    if ((next.own_dir = utf8_copy(own_dir)) == NULL
        || (next.demo_file = utf8_copy(demo_file)) == NULL) {
        rule_free(&next);
        return -1;
    }
    next.cache = PyMem_RawCalloc(LH_USER_CACHE_SIZE, sizeof(*next.cache));
    if (next.cache == NULL) {
        rule_free(&next);
        PyErr_NoMemory();
        return -1;
    }
    /* No hook reads the rule without the GIL, which the caller holds.  The
       old one is swapped out before it is released: releasing a code
       object can run Python code, which allocates. */
    lh_user_rule old = *rule;
    *rule = next;
    rule->enabled = 1;
    rule_free(&old);
    return 0;
}

/* ---- classifying code objects, cached --------------------------------- */

static size_t
cache_slot(PyObject *code)
{
    uint64_t h = (uint64_t)(uintptr_t)code * 0x9E3779B97F4A7C15u;
    return (size_t)(h >> 52) & (LH_USER_CACHE_SIZE - 1);
}

/* `text` in UTF-8 in `buf` (NUL-terminated), without allocating: this runs
   in allocator hooks, some of them with the tracer's lock held.  Returns 0
   when it does not fit. */
static int
utf8_into(PyObject *text, char *buf, size_t cap)
{
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    size_t n = 0;
    for (Py_ssize_t i = 0; i < length; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (n + 5 > cap) {
            return 0;
        }
        if (c < 0x80) {
            buf[n++] = (char)c;
        }
        else if (c < 0x800) {
            buf[n++] = (char)(0xC0 | (c >> 6));
            buf[n++] = (char)(0x80 | (c & 0x3F));
        }
        else if (c < 0x10000) {
            buf[n++] = (char)(0xE0 | (c >> 12));
            buf[n++] = (char)(0x80 | ((c >> 6) & 0x3F));
            buf[n++] = (char)(0x80 | (c & 0x3F));
        }
        else {
            buf[n++] = (char)(0xF0 | (c >> 18));
            buf[n++] = (char)(0x80 | ((c >> 12) & 0x3F));
            buf[n++] = (char)(0x80 | ((c >> 6) & 0x3F));
            buf[n++] = (char)(0x80 | (c & 0x3F));
        }
    }
    buf[n] = '\0';
    return 1;
}

static int
classify_code(const lh_user_rule *rule, PyObject *code)
{
    PyObject *filename = ((PyCodeObject *)code)->co_filename;
    if (filename == NULL || !PyUnicode_Check(filename)) {
        return LH_CODE_LIBRARY; /* no file: not a line to show first */
    }
    if (PyUnicode_IS_ASCII(filename)) {
        return lh_user_file(rule, (const char *)PyUnicode_DATA(filename));
    }
    char name[4096];
    if (!utf8_into(filename, name, sizeof(name))) {
        /* A name longer than any path: nobody's library, so the user's. */
        return LH_CODE_USER;
    }
    return lh_user_file(rule, name);
}

int
lh_user_code(lh_user_rule *rule, PyObject *code)
{
    struct lh_user_entry *cache = rule->cache;
    size_t slot = cache_slot(code);
    for (size_t i = 0; i < LH_USER_PROBES; i++) {
        struct lh_user_entry *e = &cache[(slot + i) & (LH_USER_CACHE_SIZE - 1)];
        if (e->code == code) {
            return e->user;
        }
        if (e->code == NULL) {
            e->user = classify_code(rule, code);
            Py_INCREF(code);
            e->code = code;
            return e->user;
        }
    }
    return classify_code(rule, code);
}
