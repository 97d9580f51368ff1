/* objects.h - one object: its size, its contents, its references.
 *
 * Everything here reads the target through the bounds-checked image, and
 * answers "malformed" (-1) rather than guess when a length, a count or a
 * pointer does not fit: objects found by the scan may be stale memory
 * that only looks like an object.
 */
#ifndef PYLEAKHUNT_CENSUS_OBJECTS_H
#define PYLEAKHUNT_CENSUS_OBJECTS_H

#include "scanner.h"

/* How a container refers to a child; `aux` says which child. */
typedef enum {
    CS_EDGE_NONE = 0,
    CS_EDGE_MODULE,        /* root: sys.modules[aux], aux the key (a str) */
    CS_EDGE_LOCAL,         /* root: local number aux2 of the frame running
                              the code object aux */
    CS_EDGE_STATIC_TYPE,   /* root: the __dict__ of the static type aux */
    CS_EDGE_DICT_VALUE,    /* d[aux], aux the key object */
    CS_EDGE_DICT_KEY,      /* a key of the dict */
    CS_EDGE_ITEM,          /* item aux of a list or tuple */
    CS_EDGE_SET_ITEM,      /* a member of a set */
    CS_EDGE_ATTR,          /* instance attribute aux (a str), kept in the
                              instance's values rather than a dict */
    CS_EDGE_SLOT,          /* __slots__ member: aux its name (a C string),
                              aux2 its offset */
    CS_EDGE_INSTANCE_DICT, /* obj.__dict__ */
    CS_EDGE_MODULE_DICT,   /* module.__dict__ */
    CS_EDGE_TYPE_DICT,     /* class.__dict__ */
    CS_EDGE_CLOSURE,       /* closure variable number aux of a function */
    CS_EDGE_NAMED,         /* a named field: aux is a cs_field */
    CS_EDGE_FIELD,         /* a word at byte offset aux of an object whose
                              layout we do not know */
    CS_EDGE_COUNT
} cs_edge;

/* The fields that CS_EDGE_NAMED names. */
typedef enum {
    CS_FIELD_CLOSURE = 0, /* function.__closure__ */
    CS_FIELD_DEFAULTS,
    CS_FIELD_KWDEFAULTS,
    CS_FIELD_CODE,
    CS_FIELD_FUNC_DICT,
    CS_FIELD_CELL_CONTENTS,
    CS_FIELD_SELF,
    CS_FIELD_FUNC,
    CS_FIELD_CONSTS,
    CS_FIELD_NAMES,
    CS_FIELD_COUNT
} cs_field;

/* Called once for each reference; returns 0 to go on, anything else to
   stop the visit (which then returns that value). */
typedef int (*cs_visit_fn)(void *ctx, uint64_t child, cs_edge edge,
                           uint64_t aux, uint64_t aux2);

/* Calls `fn` for every reference that `obj` (of type `t`) holds, in an
   order that puts the meaningful name first (a function's closure cells
   before its __closure__ tuple).  Returns 0, or what `fn` returned. */
int cs_visit_referents(cs_scanner *s, uint64_t obj, cs_type *t, cs_visit_fn fn,
                       void *ctx);

/* The size of `obj`: *total counts everything the object owns, as
   sys.getsizeof() does plus what getsizeof leaves out (the gc head and
   pre-header, an instance's attribute values); *body is the part at
   `obj` itself (the scan skips it).  `strict` checks more, for objects found
   by the scan. Returns 0, or -1 if the object is malformed. */
int cs_object_size(cs_scanner *s, uint64_t obj, cs_type *t, int strict,
                   uint64_t *total, uint64_t *body);

/* A str's characters, in the target's encoding. */
typedef struct {
    int kind; /* 1, 2 or 4 bytes a character */
    const uint8_t *data;
    int64_t length; /* in characters */
} cs_strview;

/* Reads the str at `obj`.  Returns 0, or -1 if it is not a valid str. */
int cs_str_read(cs_scanner *s, uint64_t obj, cs_strview *out);

/* Does the str at `obj` equal the ASCII string `text`? */
int cs_str_equals(cs_scanner *s, uint64_t obj, const char *text);

typedef int (*cs_dict_fn)(void *ctx, uint64_t key, uint64_t value);

/* Calls `fn` for each (key, value) of the dict at `dict`, in insertion
   order.  Returns 0, what `fn` returned, or -1 if the dict is
   malformed. */
int cs_dict_foreach(cs_scanner *s, uint64_t dict, cs_dict_fn fn, void *ctx);

/* The value of the str key `key` in the dict at `dict`, or 0. */
uint64_t cs_dict_get(cs_scanner *s, uint64_t dict, const char *key);

/* The name of closure variable `index` of the function at `func`, as a
   str object address, or 0. */
uint64_t cs_closure_name(cs_scanner *s, uint64_t func, uint64_t index);

/* The name of local number `index` of the code object at `code`, as a
   str object address, or 0. */
uint64_t cs_local_name(cs_scanner *s, uint64_t code, uint64_t index);

/* The number of local slots (locals, cells, free variables) of a frame
   running the code object at `code`; -1 if unreadable. */
int64_t cs_code_nlocals(cs_scanner *s, uint64_t code);

/* 3.15+: the bytes object whose data the bytearray at `obj` uses, if
   the bytearray is its only holder (it then owns it, as sys.getsizeof()
   says); else 0. */
uint64_t cs_bytearray_owned_bytes(cs_scanner *s, uint64_t obj);

/* The item at `index` of the tuple at `tuple`, or 0. */
uint64_t cs_tuple_item(cs_scanner *s, uint64_t tuple, int64_t index);

#endif
