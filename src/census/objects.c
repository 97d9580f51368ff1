/* objects.c - reading one object: strs, dicts, sizes, references.
 *
 * Layers, top to bottom: strs; dict keys and dicts; the instance
 * attributes of classes (managed dicts, slots); sizes; references.
 */
#include "objects.h"

#include <stdlib.h>
#include <string.h>

#include "types.h"

/* Counts beyond these are garbage, not objects. */
#define MAX_ITEMS (1LL << 36)
#define MAX_DICT_ENTRIES (1LL << 32)
#define MAX_BYTES (1LL << 40)
#define MAX_INT_DIGITS (1LL << 24)
/* Objects of unknown layout are read conservatively up to this size. */
#define MAX_FIELD_BYTES 4096

static int64_t
abs64(int64_t value)
{
    return value < 0 ? -value : value;
}

static uint64_t
round8(uint64_t value)
{
    return (value + 7) & ~(uint64_t)7;
}

/* ---- strs --------------------------------------------------------------- */

/* PyASCIIObject.state bits, the same in 3.10 to 3.15. */
#define STATE_KIND(state) (((state) >> 2) & 7u)
#define STATE_COMPACT(state) (((state) >> 5) & 1u)
#define STATE_ASCII(state) (((state) >> 6) & 1u)

static uint64_t
str_data_address(cs_scanner *s, uint64_t obj, uint32_t state)
{
    const cs_layout *lay = s->lay;
    if (!STATE_COMPACT(state)) {
        return cs_word(&s->image, obj + lay->unicode_data);
    }
    return obj + (STATE_ASCII(state) ? lay->ascii_size : lay->compact_size);
}

int
cs_str_read(cs_scanner *s, uint64_t obj, cs_strview *out)
{
    const cs_layout *lay = s->lay;
    if (cs_image_ptr(&s->image, obj, lay->ascii_size) == NULL) {
        return -1;
    }
    uint32_t state = cs_u32(&s->image, obj + lay->unicode_state);
    int kind = (int)STATE_KIND(state);
    int64_t length = cs_sword(&s->image, obj + lay->unicode_length);
    if ((kind != 1 && kind != 2 && kind != 4) || length < 0
        || length > MAX_BYTES || (STATE_ASCII(state) && kind != 1)) {
        return -1;
    }
    uint64_t data = str_data_address(s, obj, state);
    uint64_t bytes = (uint64_t)(length + 1) * (uint64_t)kind;
    const uint8_t *p = cs_image_ptr(&s->image, data, bytes);
    if (p == NULL) {
        return -1;
    }
    /* Every str ends with a NUL character: a cheap check that this is
       one. */
    for (int i = 0; i < kind; i++) {
        if (p[(uint64_t)length * (uint64_t)kind + (uint64_t)i] != 0) {
            return -1;
        }
    }
    out->kind = kind;
    out->data = p;
    out->length = length;
    return 0;
}

int
cs_str_equals(cs_scanner *s, uint64_t obj, const char *text)
{
    cs_strview view;
    size_t length = strlen(text);
    if (cs_str_read(s, obj, &view) < 0 || view.kind != 1
        || (uint64_t)view.length != length) {
        return 0;
    }
    return memcmp(view.data, text, length) == 0;
}

/* sys.getsizeof() of a str, as unicode.__sizeof__ computes it (without
   the wstr cache of 3.10-3.11, which nothing fills any more).  *body is
   the part at `obj`; the characters of a non-compact str (a subclass's
   instance) and a separate UTF-8 copy are *extra. */
static int
str_size(cs_scanner *s, uint64_t obj, uint64_t *body, uint64_t *extra)
{
    const cs_layout *lay = s->lay;
    cs_strview view;
    if (cs_str_read(s, obj, &view) < 0) {
        return -1;
    }
    uint32_t state = cs_u32(&s->image, obj + lay->unicode_state);
    uint64_t chars = (uint64_t)(view.length + 1) * (uint64_t)view.kind;
    *extra = 0;
    if (STATE_COMPACT(state) && STATE_ASCII(state)) {
        *body = (uint64_t)lay->ascii_size + chars;
        return 0;
    }
    if (STATE_COMPACT(state)) {
        *body = (uint64_t)lay->compact_size + chars;
    }
    else {
        *body = (uint64_t)lay->unicode_size;
        *extra = chars;
    }
    uint64_t utf8 = cs_word(&s->image, obj + lay->unicode_utf8);
    if (utf8 != 0 && utf8 != str_data_address(s, obj, state)) {
        int64_t utf8_length
            = cs_sword(&s->image, obj + lay->unicode_utf8_length);
        if (utf8_length >= 0 && utf8_length < MAX_BYTES) {
            *extra += (uint64_t)utf8_length + 1;
        }
    }
    return 0;
}

/* ---- dict keys and dicts ------------------------------------------------ */

/* Where the entries of a PyDictKeysObject are, and how big. */
typedef struct {
    uint64_t entries;    /* address of entry 0 */
    int64_t nentries;    /* entries used (some may be deleted) */
    int64_t usable;      /* entries still free */
    int64_t size;        /* slots of the hash index */
    uint64_t index_size; /* bytes of the hash index */
    int entry_size;      /* 24 (hash, key, value) or 16 (key, value) */
    int key_at;
    int value_at;
} keys_geometry;

static int
index_width(int64_t size)
{
    if (size <= 0xff) {
        return 1;
    }
    if (size <= 0xffff) {
        return 2;
    }
    return size <= 0xffffffffLL ? 4 : 8;
}

/* The hash index: dk_size (3.10) entries of the narrowest width that
   fits, or 1 << dk_log2_index_bytes bytes (3.11+). */
static int
read_index_size(cs_scanner *s, uint64_t keys, keys_geometry *g)
{
    const cs_layout *lay = s->lay;
    if (lay->keys_size >= 0) {
        g->size = cs_sword(&s->image, keys + lay->keys_size);
        if (g->size <= 0 || g->size > MAX_DICT_ENTRIES
            || (g->size & (g->size - 1)) != 0) {
            return -1;
        }
    }
    else {
        unsigned log2_size = cs_u8(&s->image, keys + lay->keys_log2_size);
        if (log2_size > 32) {
            return -1;
        }
        g->size = (int64_t)1 << log2_size;
    }
    g->index_size = (uint64_t)g->size * (uint64_t)index_width(g->size);
    if (lay->keys_log2_index_bytes >= 0) {
        unsigned log2_bytes
            = cs_u8(&s->image, keys + lay->keys_log2_index_bytes);
        if (log2_bytes > 35) {
            return -1;
        }
        g->index_size = (uint64_t)1 << log2_bytes;
    }
    return 0;
}

static int
read_keys(cs_scanner *s, uint64_t keys, keys_geometry *g)
{
    const cs_layout *lay = s->lay;
    if (cs_image_ptr(&s->image, keys, lay->keys_indices) == NULL
        || read_index_size(s, keys, g) < 0) {
        return -1;
    }
    g->nentries = cs_sword(&s->image, keys + lay->keys_nentries);
    g->usable = cs_sword(&s->image, keys + lay->keys_usable);
    if (g->nentries < 0 || g->nentries > (g->size << 1) / 3 || g->usable < 0
        || g->usable > g->size) {
        return -1;
    }
    /* 3.11+: kind 0 is DICT_KEYS_GENERAL, with the hash; the unicode and
       split kinds drop it. */
    int general = !cs_keys_have_kind(lay)
                  || cs_u8(&s->image, keys + lay->keys_kind) == 0;
    g->entry_size = general ? 24 : 16;
    g->key_at = general ? 8 : 0;
    g->value_at = general ? 16 : 8;
    g->entries = keys + (uint64_t)lay->keys_indices + g->index_size;
    return 0;
}

/* Bytes of a keys object: header, hash index, entries. */
static uint64_t
keys_bytes(cs_scanner *s, const keys_geometry *g)
{
    uint64_t usable = (uint64_t)((g->size << 1) / 3);
    return (uint64_t)s->lay->keys_indices + g->index_size
           + usable * (uint64_t)g->entry_size;
}

/* Visits entries [0, count) of the keys `g`; values come from `values`
   (a split table) if it is not NULL, else from the entries. */
static int
foreach_entry(const keys_geometry *g, int64_t count, const uint8_t *entries,
              const uint8_t *values, cs_dict_fn fn, void *ctx)
{
    for (int64_t i = 0; i < count; i++) {
        const uint8_t *entry = entries + i * g->entry_size;
        uint64_t key;
        uint64_t value;
        memcpy(&key, entry + g->key_at, 8);
        if (values != NULL) {
            memcpy(&value, values + i * 8, 8);
        }
        else {
            memcpy(&value, entry + g->value_at, 8);
        }
        if (key != 0 && value != 0) {
            int result = fn(ctx, key, value);
            if (result != 0) {
                return result;
            }
        }
    }
    return 0;
}

/* The values array of a split table: 3.10-3.12 point at the array, 3.13+
   at a PyDictValues whose first byte is its capacity. */
static const uint8_t *
split_values(cs_scanner *s, uint64_t values, int64_t *count)
{
    const cs_layout *lay = s->lay;
    if (lay->values_values > 0) {
        int64_t capacity = cs_u8(&s->image, values);
        if (capacity < *count) {
            *count = capacity;
        }
    }
    return cs_image_ptr(&s->image, values + (uint64_t)lay->values_values,
                        (uint64_t)*count * 8);
}

int
cs_dict_foreach(cs_scanner *s, uint64_t dict, cs_dict_fn fn, void *ctx)
{
    const cs_layout *lay = s->lay;
    keys_geometry g;
    uint64_t keys = cs_word(&s->image, dict + lay->dict_keys);
    if (keys == 0 || read_keys(s, keys, &g) < 0) {
        return -1;
    }
    int64_t count = g.nentries;
    const uint8_t *values = NULL;
    uint64_t values_addr = cs_word(&s->image, dict + lay->dict_values);
    if (values_addr != 0) {
        values = split_values(s, values_addr, &count);
        if (values == NULL) {
            return -1;
        }
    }
    const uint8_t *entries = cs_image_ptr(
        &s->image, g.entries, (uint64_t)count * (uint64_t)g.entry_size);
    if (entries == NULL && count > 0) {
        return -1;
    }
    return foreach_entry(&g, count, entries, values, fn, ctx);
}

typedef struct {
    cs_scanner *s;
    const char *key;
    uint64_t value;
} dict_get_ctx;

static int
dict_get_visit(void *ctx, uint64_t key, uint64_t value)
{
    dict_get_ctx *get = ctx;
    if (cs_str_equals(get->s, key, get->key)) {
        get->value = value;
        return 1;
    }
    return 0;
}

uint64_t
cs_dict_get(cs_scanner *s, uint64_t dict, const char *key)
{
    dict_get_ctx get = {s, key, 0};
    if (dict == 0) {
        return 0;
    }
    cs_dict_foreach(s, dict, dict_get_visit, &get);
    return get.value;
}

/* Bytes a dict owns beyond its body, as dict.__sizeof__ counts them:
   the values of a split table (unless they live inside an instance,
   3.13), and the keys unless shared. */
static int
dict_extra(cs_scanner *s, uint64_t dict, uint64_t *extra)
{
    const cs_layout *lay = s->lay;
    keys_geometry g;
    uint64_t keys = cs_word(&s->image, dict + lay->dict_keys);
    if (keys == 0 || read_keys(s, keys, &g) < 0) {
        return -1;
    }
    *extra = 0;
    uint64_t values = cs_word(&s->image, dict + lay->dict_values);
    if (values != 0) {
        int embedded = lay->values_values > 0 && cs_u8(&s->image, values + 2);
        uint64_t slots = lay->keys_size >= 0 || lay->keys_kind < 0
                             ? (uint64_t)((g.size << 1) / 3)
                             : (uint64_t)(g.nentries + g.usable);
        *extra += embedded ? 0 : slots * 8;
    }
    if (cs_sword(&s->image, keys + lay->keys_refcnt) == 1) {
        *extra += keys_bytes(s, &g);
    }
    return 0;
}

/* ---- instance attributes ------------------------------------------------ */

/* Where an instance keeps its attributes: a dict, or (3.11+) a values
   array whose names are the keys shared by all instances of the class. */
typedef struct {
    uint64_t dict;
    uint64_t values; /* address of the first value */
    int64_t nvalues;
    uint64_t names; /* entries of the class's shared keys (16 bytes each:
                       key, value) */
} instance_attrs;

/* The shared keys of class `t` (ht_cached_keys): their entries and how
   many are used. */
static int
cached_keys(cs_scanner *s, cs_type *t, instance_attrs *attrs)
{
    keys_geometry g;
    uint64_t keys = cs_word(&s->image, t->addr + s->lay->heap_cached_keys);
    if (keys == 0 || read_keys(s, keys, &g) < 0 || g.entry_size != 16) {
        return -1;
    }
    attrs->names = g.entries;
    if (attrs->nvalues > g.nentries || attrs->nvalues < 0) {
        attrs->nvalues = g.nentries;
    }
    return 0;
}

/* 3.11: values at -32, dict at -24.  3.12: one word at -24, the values
   pointer minus one (odd) or the dict.  3.13+: the dict at -24 (three
   words before the object); with Py_TPFLAGS_INLINE_VALUES, the values
   inline at tp_basicsize, valid while their fourth byte is set. */
static void
managed_attrs(cs_scanner *s, uint64_t obj, cs_type *t, instance_attrs *attrs)
{
    cs_image *img = &s->image;
    int minor = s->lay->minor;
    attrs->nvalues = -1;
    if (minor == 11) {
        attrs->dict = cs_word(img, obj - 24);
        attrs->values = cs_word(img, obj - 32);
    }
    else if (minor == 12) {
        uint64_t word = cs_word(img, obj - 24);
        if (word & 1) {
            attrs->values = word + 1;
        }
        else {
            attrs->dict = word;
        }
    }
    else {
        attrs->dict = cs_word(img, obj - 24);
        uint64_t inline_values = obj + (uint64_t)t->basicsize;
        if ((t->flags & CS_TPFLAGS_INLINE_VALUES)
            && cs_u8(img, inline_values + 3) != 0) {
            attrs->values = inline_values + (uint64_t)s->lay->values_values;
            attrs->nvalues = cs_u8(img, inline_values);
        }
    }
    if (attrs->dict != 0 || attrs->values == 0
        || cached_keys(s, t, attrs) < 0) {
        attrs->values = 0;
    }
}

/* The address of the word that points to the instance dict, by
   tp_dictoffset (negative: from the end of a variable-size object). */
static uint64_t
dict_pointer(cs_scanner *s, uint64_t obj, cs_type *t)
{
    if (t->dictoffset > 0) {
        return obj + (uint64_t)t->dictoffset;
    }
    int64_t items = abs64(cs_sword(&s->image, obj + CS_OB_SIZE));
    if (items > MAX_ITEMS) {
        return 0;
    }
    uint64_t size = round8((uint64_t)t->basicsize
                           + (uint64_t)items * (uint64_t)t->itemsize);
    return obj + size + (uint64_t)t->dictoffset;
}

static void
instance_attrs_of(cs_scanner *s, uint64_t obj, cs_type *t,
                  instance_attrs *attrs)
{
    memset(attrs, 0, sizeof(*attrs));
    if (t->kind == CS_KIND_TYPE) {
        return; /* a class's namespace is tp_dict: CS_EDGE_TYPE_DICT */
    }
    if (t->flags & CS_TPFLAGS_MANAGED_DICT) {
        managed_attrs(s, obj, t, attrs);
    }
    else if (t->dictoffset != 0) {
        uint64_t where = dict_pointer(s, obj, t);
        attrs->dict = where == 0 ? 0 : cs_word(&s->image, where);
    }
}

/* Bytes of an instance's attribute values (3.11+), which
   sys.getsizeof() leaves out.  3.11-3.12 allocate them apart
   (new_values(): one prefix byte a slot plus two, rounded to a word,
   then the slots); 3.13 puts them after the object
   (_PyInlineValuesSize(): the prefix rounded to a word, a header word,
   the slots). */
static uint64_t
values_bytes(cs_scanner *s, uint64_t obj, cs_type *t)
{
    if (!(t->flags & CS_TPFLAGS_MANAGED_DICT)) {
        return 0;
    }
    if (s->lay->minor >= 13) {
        if (!(t->flags & CS_TPFLAGS_INLINE_VALUES)) {
            return 0;
        }
        uint64_t capacity = cs_u8(&s->image, obj + (uint64_t)t->basicsize);
        return round8(capacity) + (capacity + 1) * 8;
    }
    instance_attrs attrs;
    keys_geometry g;
    instance_attrs_of(s, obj, t, &attrs);
    uint64_t keys = cs_word(&s->image, t->addr + s->lay->heap_cached_keys);
    if (attrs.values == 0 || read_keys(s, keys, &g) < 0) {
        return 0;
    }
    uint64_t slots = (uint64_t)(g.nentries + g.usable);
    return round8(slots + 2) + slots * 8;
}

/* The __slots__ of class `t` and of its heap bases: member descriptors
   of object type, found in the classes' dicts. */
typedef struct {
    cs_scanner *s;
    cs_type *t;
} slots_ctx;

static int
add_slot(cs_type *t, int64_t offset, uint64_t name)
{
    if (cs_grow((void **)&t->slots, &t->slots_cap, t->nslots + 1,
                sizeof(cs_slot))
        < 0) {
        return -1;
    }
    t->slots[t->nslots].offset = offset;
    t->slots[t->nslots].name = name;
    t->nslots++;
    return 0;
}

static int
slot_visit(void *ctx, uint64_t key, uint64_t value)
{
    slots_ctx *slots = ctx;
    cs_scanner *s = slots->s;
    const cs_layout *lay = s->lay;
    cs_type *vt = cs_type_of(s, value);
    (void)key;
    if (vt == NULL || vt->kind != CS_KIND_MEMBER_DESCR) {
        return 0;
    }
    uint64_t member = cs_word(&s->image, value + lay->member_descr_member);
    uint32_t type = cs_u32(&s->image, member + lay->member_def_type);
    int64_t offset = cs_sword(&s->image, member + lay->member_def_offset);
    uint64_t name = cs_word(&s->image, member + lay->member_def_name);
    if ((type != CS_T_OBJECT && type != CS_T_OBJECT_EX)
        || offset < CS_OBJECT_SIZE || offset + 8 > slots->t->basicsize) {
        return 0;
    }
    if (add_slot(slots->t, offset, name) < 0) {
        s->out_of_memory = 1;
        return 1;
    }
    return 0;
}

static void
read_slots(cs_scanner *s, cs_type *t)
{
    slots_ctx ctx = {s, t};
    uint64_t current = t->addr;
    t->slots_read = 1;
    for (int depth = 0; depth < 64 && current != 0; depth++) {
        uint64_t flags = cs_word(&s->image, current + s->lay->type_flags);
        if (!(flags & CS_TPFLAGS_HEAPTYPE)) {
            break;
        }
        uint64_t dict = cs_word(&s->image, current + s->lay->type_dict);
        if (dict != 0) {
            cs_dict_foreach(s, dict, slot_visit, &ctx);
        }
        current = cs_word(&s->image, current + s->lay->type_base);
    }
}

static uint64_t
slot_name(cs_scanner *s, cs_type *t, int64_t offset)
{
    if (!t->slots_read) {
        read_slots(s, t);
    }
    for (size_t i = 0; i < t->nslots; i++) {
        if (t->slots[i].offset == offset) {
            return t->slots[i].name;
        }
    }
    return 0;
}

/* ---- sizes ---------------------------------------------------------------
 */

/* basicsize plus the items of a variable-size object. */
static int
var_body(cs_scanner *s, uint64_t obj, cs_type *t, uint64_t *body)
{
    *body = (uint64_t)t->basicsize;
    if (t->itemsize > 0) {
        int64_t items = abs64(cs_sword(&s->image, obj + CS_OB_SIZE));
        if (items > MAX_BYTES / t->itemsize) {
            return -1;
        }
        *body += (uint64_t)items * (uint64_t)t->itemsize;
    }
    return 0;
}

static int
bytes_size(cs_scanner *s, uint64_t obj, int strict, uint64_t *body)
{
    int64_t size = cs_sword(&s->image, obj + CS_OB_SIZE);
    if (size < 0 || size > MAX_BYTES) {
        return -1;
    }
    *body = (uint64_t)s->lay->bytes_sval + (uint64_t)size + 1;
    if (strict) {
        const uint8_t *p = cs_image_ptr(&s->image, obj, *body);
        if (p == NULL || p[*body - 1] != 0) {
            return -1;
        }
    }
    return 0;
}

/* An int's digits: ob_size (3.10-3.11, its sign the int's), or the tag
   ndigits << 3 | sign (3.12+, sign 0 positive, 1 zero, 2 negative).  A
   normalised int's top digit is not zero, and digits have 30 bits. */
static int
int_size(cs_scanner *s, uint64_t obj, int strict, uint64_t *body)
{
    const cs_layout *lay = s->lay;
    uint64_t tag = cs_word(&s->image, obj + CS_OB_SIZE);
    int64_t ndigits;
    if (cs_long_is_tagged(lay)) {
        ndigits = (int64_t)(tag >> 3);
        if ((tag & 3) == 3 || ((tag & 3) == 1) != (ndigits == 0)) {
            return -1;
        }
    }
    else {
        ndigits = abs64((int64_t)tag);
    }
    if (ndigits > MAX_INT_DIGITS) {
        return -1;
    }
    int64_t counted = ndigits;
    if (cs_long_is_tagged(lay) && counted == 0) {
        counted = 1;
    }
    *body = (uint64_t)lay->long_digits + (uint64_t)counted * 4;
    if (strict && ndigits > 0) {
        uint64_t top_at
            = obj + (uint64_t)lay->long_digits + (uint64_t)(ndigits - 1) * 4;
        const uint8_t *top = cs_image_ptr(&s->image, top_at, 4);
        uint32_t digit;
        if (top == NULL) {
            return -1;
        }
        memcpy(&digit, top, 4);
        if (digit == 0 || digit >= (1u << 30)) {
            return -1;
        }
    }
    return 0;
}

static int
list_size(cs_scanner *s, uint64_t obj, cs_type *t, uint64_t *body,
          uint64_t *extra)
{
    int64_t size = cs_sword(&s->image, obj + CS_OB_SIZE);
    int64_t allocated = cs_sword(&s->image, obj + s->lay->list_allocated);
    if (size < 0 || allocated < size || allocated > MAX_ITEMS) {
        return -1;
    }
    *body = (uint64_t)t->basicsize;
    *extra = (uint64_t)allocated * 8;
    return 0;
}

static int
set_size(cs_scanner *s, uint64_t obj, cs_type *t, uint64_t *body,
         uint64_t *extra)
{
    const cs_layout *lay = s->lay;
    int64_t mask = cs_sword(&s->image, obj + lay->set_mask);
    uint64_t table = cs_word(&s->image, obj + lay->set_table);
    if (mask < 7 || mask > MAX_ITEMS || ((mask + 1) & mask) != 0) {
        return -1;
    }
    *body = (uint64_t)t->basicsize;
    *extra = 0;
    if (table != obj + (uint64_t)lay->set_smalltable) {
        *extra = (uint64_t)(mask + 1) * (uint64_t)lay->set_entry_size;
    }
    return 0;
}

/* A bytearray owns its buffer, ob_alloc bytes at ob_bytes, of which
   ob_size + 1 are used (it keeps a NUL after the data); ob_start points
   into it. */
/* 3.15+: the characters are those of a bytes object the bytearray
   holds; the scan counts that object itself, so the bytearray owns only
   its body.  ob_bytes points at the bytes object's data. */
static int
bytearray_in_bytes(cs_scanner *s, uint64_t obj, cs_type *t, int strict,
                   uint64_t *body, uint64_t *extra)
{
    const cs_layout *lay = s->lay;
    int64_t size = cs_sword(&s->image, obj + CS_OB_SIZE);
    int64_t alloc = cs_sword(&s->image, obj + lay->bytearray_alloc);
    if (size < 0 || alloc < 0 || alloc > MAX_BYTES || size > alloc) {
        return -1;
    }
    if (strict) {
        uint64_t holder
            = cs_word(&s->image, obj + lay->bytearray_bytes_object);
        uint64_t bytes = cs_word(&s->image, obj + lay->bytearray_alloc + 8);
        uint64_t start = cs_word(&s->image, obj + lay->bytearray_alloc + 16);
        uint64_t end = bytes + (uint64_t)alloc;
        if (holder == 0 || bytes != holder + (uint64_t)lay->bytes_sval
            || start < bytes || start + (uint64_t)size > end
            || cs_image_ptr(&s->image, holder, (uint64_t)lay->bytes_sval)
                   == NULL) {
            return -1;
        }
    }
    *body = (uint64_t)t->basicsize;
    /* sys.getsizeof() counts the bytes object in when the bytearray is
       its only holder (census.c then drops it from the bytes). */
    uint64_t owned = cs_bytearray_owned_bytes(s, obj);
    *extra = owned == 0 ? 0
                        : (uint64_t)lay->bytes_sval
                              + (uint64_t)cs_sword(&s->image,
                                                   owned + CS_OB_SIZE)
                              + 1;
    return 0;
}

uint64_t
cs_bytearray_owned_bytes(cs_scanner *s, uint64_t obj)
{
    const cs_layout *lay = s->lay;
    if (lay->bytearray_bytes_object < 0) {
        return 0;
    }
    uint64_t holder = cs_word(&s->image, obj + lay->bytearray_bytes_object);
    uint64_t refcnt;
    if (holder == 0 || cs_read_u64(&s->image, holder, &refcnt) < 0
        || (uint32_t)refcnt != 1) {
        return 0;
    }
    int64_t length = cs_sword(&s->image, holder + CS_OB_SIZE);
    return length < 0 || length > MAX_BYTES ? 0 : holder;
}

static int
bytearray_size(cs_scanner *s, uint64_t obj, cs_type *t, int strict,
               uint64_t *body, uint64_t *extra)
{
    const cs_layout *lay = s->lay;
    int64_t size = cs_sword(&s->image, obj + CS_OB_SIZE);
    int64_t alloc = cs_sword(&s->image, obj + lay->bytearray_alloc);
    if (lay->bytearray_bytes_object >= 0) {
        return bytearray_in_bytes(s, obj, t, strict, body, extra);
    }
    if (size < 0 || alloc < 0 || alloc > MAX_BYTES
        || (alloc > 0 && size >= alloc)) {
        return -1;
    }
    if (strict) {
        uint64_t bytes = cs_word(&s->image, obj + lay->bytearray_alloc + 8);
        uint64_t start = cs_word(&s->image, obj + lay->bytearray_alloc + 16);
        if ((alloc == 0) != (bytes == 0) || start < bytes
            || start + (uint64_t)size > bytes + (uint64_t)alloc
            || (alloc > 0
                && cs_image_ptr(&s->image, bytes, (uint64_t)alloc) == NULL)) {
            return -1;
        }
    }
    *body = (uint64_t)t->basicsize;
    *extra = (uint64_t)alloc;
    return 0;
}

/* A deque owns the blocks its items span. */
static int
deque_size(cs_scanner *s, uint64_t obj, cs_type *t, uint64_t *body,
           uint64_t *extra)
{
    int64_t count = cs_sword(&s->image, obj + CS_OB_SIZE);
    int64_t left = cs_sword(&s->image, obj + CS_DEQUE_LEFTINDEX);
    if (count < 0 || (uint64_t)count > s->image_bytes / 8 || left < 0
        || left >= CS_DEQUE_BLOCKLEN) {
        return -1;
    }
    uint64_t blocks = (uint64_t)(left + count) / CS_DEQUE_BLOCKLEN + 1;
    *body = (uint64_t)t->basicsize;
    *extra = blocks * CS_DEQUE_BLOCK_SIZE;
    return 0;
}

/* Body and owned storage of an object, by kind. */
static int
kind_size(cs_scanner *s, uint64_t obj, cs_type *t, int strict, uint64_t *body,
          uint64_t *extra)
{
    *extra = 0;
    switch (t->kind) {
    case CS_KIND_STR:
        return str_size(s, obj, body, extra);
    case CS_KIND_BYTES:
        return bytes_size(s, obj, strict, body);
    case CS_KIND_INT:
        return int_size(s, obj, strict, body);
    case CS_KIND_LIST:
        return list_size(s, obj, t, body, extra);
    case CS_KIND_SET:
        return set_size(s, obj, t, body, extra);
    case CS_KIND_DICT:
        *body = (uint64_t)t->basicsize;
        return dict_extra(s, obj, extra);
    case CS_KIND_DEQUE:
        return deque_size(s, obj, t, body, extra);
    case CS_KIND_BYTEARRAY:
        return bytearray_size(s, obj, t, strict, body, extra);
    default:
        return var_body(s, obj, t, body);
    }
}

int
cs_object_size(cs_scanner *s, uint64_t obj, cs_type *t, int strict,
               uint64_t *total, uint64_t *body)
{
    uint64_t extra;
    if (kind_size(s, obj, t, strict, body, &extra) < 0) {
        return -1;
    }
    /* An object's body is contiguous: all of it must be in the image. */
    if (strict && cs_image_ptr(&s->image, obj, *body) == NULL) {
        return -1;
    }
    if (cs_type_is_heap(t)) {
        extra += values_bytes(s, obj, t);
    }
    *total = cs_type_preheader(s, t) + *body + extra;
    return 0;
}

/* ---- references ----------------------------------------------------------
 */

typedef struct {
    cs_visit_fn fn;
    void *ctx;
} visit_ctx;

static int
visit_array(const uint8_t *items, int64_t count, cs_edge edge, cs_visit_fn fn,
            void *ctx)
{
    for (int64_t i = 0; i < count; i++) {
        uint64_t child;
        memcpy(&child, items + i * 8, 8);
        if (child != 0) {
            int result = fn(ctx, child, edge, (uint64_t)i, 0);
            if (result != 0) {
                return result;
            }
        }
    }
    return 0;
}

static int
visit_tuple(cs_scanner *s, uint64_t obj, cs_visit_fn fn, void *ctx)
{
    int64_t count = cs_sword(&s->image, obj + CS_OB_SIZE);
    if (count <= 0 || count > MAX_ITEMS) {
        return 0;
    }
    const uint8_t *items = cs_image_ptr(
        &s->image, obj + (uint64_t)s->lay->tuple_items, (uint64_t)count * 8);
    return items == NULL ? 0
                         : visit_array(items, count, CS_EDGE_ITEM, fn, ctx);
}

static int
visit_list(cs_scanner *s, uint64_t obj, cs_visit_fn fn, void *ctx)
{
    int64_t count = cs_sword(&s->image, obj + CS_OB_SIZE);
    uint64_t array = cs_word(&s->image, obj + s->lay->list_items);
    if (count <= 0 || count > MAX_ITEMS || array == 0) {
        return 0;
    }
    const uint8_t *items = cs_image_ptr(&s->image, array, (uint64_t)count * 8);
    return items == NULL ? 0
                         : visit_array(items, count, CS_EDGE_ITEM, fn, ctx);
}

/* A deque's items: `count` of them from slot leftindex of leftblock,
   following right links from block to block. */
static int
visit_deque(cs_scanner *s, uint64_t obj, cs_visit_fn fn, void *ctx)
{
    int64_t count = cs_sword(&s->image, obj + CS_OB_SIZE);
    uint64_t block = cs_word(&s->image, obj + CS_DEQUE_LEFTBLOCK);
    int64_t index = cs_sword(&s->image, obj + CS_DEQUE_LEFTINDEX);
    /* A damaged block chain may loop: no deque holds more items than the
       image has words. */
    if (count <= 0 || (uint64_t)count > s->image_bytes / 8 || index < 0
        || index >= CS_DEQUE_BLOCKLEN) {
        return 0;
    }
    for (int64_t i = 0; i < count; i++, index++) {
        if (index == CS_DEQUE_BLOCKLEN) {
            block = cs_word(&s->image, block + CS_DEQUE_BLOCK_SIZE - 8);
            index = 0;
        }
        const uint8_t *p = cs_image_ptr(&s->image, block, CS_DEQUE_BLOCK_SIZE);
        if (p == NULL) {
            return 0;
        }
        uint64_t child;
        memcpy(&child, p + 8 + index * 8, 8);
        if (child != 0) {
            int result = fn(ctx, child, CS_EDGE_ITEM, (uint64_t)i, 0);
            if (result != 0) {
                return result;
            }
        }
    }
    return 0;
}

static int
dict_visit(void *ctx, uint64_t key, uint64_t value)
{
    visit_ctx *visit = ctx;
    int result = visit->fn(visit->ctx, value, CS_EDGE_DICT_VALUE, key, 0);
    if (result != 0) {
        return result;
    }
    return visit->fn(visit->ctx, key, CS_EDGE_DICT_KEY, 0, 0);
}

static int
visit_dict(cs_scanner *s, uint64_t obj, cs_visit_fn fn, void *ctx)
{
    visit_ctx visit = {fn, ctx};
    int result = cs_dict_foreach(s, obj, dict_visit, &visit);
    return result < 0 ? 0 : result;
}

/* Set entries are (key, hash); a deleted entry keeps a dummy key and the
   hash -1. */
static int
visit_set(cs_scanner *s, uint64_t obj, cs_visit_fn fn, void *ctx)
{
    const cs_layout *lay = s->lay;
    int64_t mask = cs_sword(&s->image, obj + lay->set_mask);
    uint64_t table = cs_word(&s->image, obj + lay->set_table);
    if (mask < 0 || mask > MAX_ITEMS) {
        return 0;
    }
    uint64_t count = (uint64_t)mask + 1;
    const uint8_t *entries = cs_image_ptr(
        &s->image, table, count * (uint64_t)lay->set_entry_size);
    if (entries == NULL) {
        return 0;
    }
    for (uint64_t i = 0; i < count; i++) {
        uint64_t key;
        int64_t hash;
        memcpy(&key, entries + i * (uint64_t)lay->set_entry_size, 8);
        memcpy(&hash, entries + i * (uint64_t)lay->set_entry_size + 8, 8);
        if (key != 0 && hash != -1) {
            int result = fn(ctx, key, CS_EDGE_SET_ITEM, 0, 0);
            if (result != 0) {
                return result;
            }
        }
    }
    return 0;
}

static int
visit_named(cs_scanner *s, uint64_t at, cs_field field, cs_visit_fn fn,
            void *ctx)
{
    uint64_t child = cs_word(&s->image, at);
    return child == 0 ? 0 : fn(ctx, child, CS_EDGE_NAMED, field, 0);
}

/* A function: its closure cells first (named by the code's free
   variables), then the tuple that holds them, and the rest.  Not
   __globals__: a module is reached by its name, not through each of its
   functions. */
static int
visit_function(cs_scanner *s, uint64_t obj, cs_visit_fn fn, void *ctx)
{
    const cs_layout *lay = s->lay;
    uint64_t closure = cs_word(&s->image, obj + lay->func_closure);
    int64_t count = closure ? cs_sword(&s->image, closure + CS_OB_SIZE) : 0;
    const uint8_t *cells = NULL;
    if (count > 0 && count < 4096) {
        cells = cs_image_ptr(&s->image, closure + (uint64_t)lay->tuple_items,
                             (uint64_t)count * 8);
    }
    int result = 0;
    if (cells != NULL) {
        result = visit_array(cells, count, CS_EDGE_CLOSURE, fn, ctx);
    }
    const int32_t offsets[]
        = {lay->func_closure, lay->func_defaults, lay->func_kwdefaults,
           lay->func_dict, lay->func_code};
    const cs_field fields[]
        = {CS_FIELD_CLOSURE, CS_FIELD_DEFAULTS, CS_FIELD_KWDEFAULTS,
           CS_FIELD_FUNC_DICT, CS_FIELD_CODE};
    for (size_t i = 0; result == 0 && i < 5; i++) {
        result
            = visit_named(s, obj + (uint64_t)offsets[i], fields[i], fn, ctx);
    }
    return result;
}

/* The words of an object whose layout we do not know, from `from` to
   `to`: each may be a reference.  The caller's callback drops those that
   are not objects. */
static int
visit_fields(cs_scanner *s, uint64_t obj, cs_type *t, int64_t from, int64_t to,
             cs_visit_fn fn, void *ctx)
{
    if (to > from + MAX_FIELD_BYTES) {
        to = from + MAX_FIELD_BYTES;
    }
    for (int64_t offset = from; offset + 8 <= to; offset += 8) {
        if (offset == t->dictoffset || offset == t->weaklistoffset) {
            continue;
        }
        uint64_t child = cs_word(&s->image, obj + (uint64_t)offset);
        if (child == 0 || (child & 7) != 0) {
            continue;
        }
        uint64_t name = cs_type_is_heap(t) ? slot_name(s, t, offset) : 0;
        int result = name != 0
                         ? fn(ctx, child, CS_EDGE_SLOT, name, (uint64_t)offset)
                         : fn(ctx, child, CS_EDGE_FIELD, (uint64_t)offset, 0);
        if (result != 0) {
            return result;
        }
    }
    return 0;
}

/* An instance's attributes: its dict, or its values with the names of
   the class's shared keys. */
static int
visit_attrs(cs_scanner *s, uint64_t obj, cs_type *t, cs_visit_fn fn, void *ctx)
{
    instance_attrs attrs;
    instance_attrs_of(s, obj, t, &attrs);
    if (attrs.dict != 0) {
        return fn(ctx, attrs.dict, CS_EDGE_INSTANCE_DICT, 0, 0);
    }
    if (attrs.values == 0 || attrs.nvalues <= 0) {
        return 0;
    }
    const uint8_t *values
        = cs_image_ptr(&s->image, attrs.values, (uint64_t)attrs.nvalues * 8);
    const uint8_t *names
        = cs_image_ptr(&s->image, attrs.names, (uint64_t)attrs.nvalues * 16);
    if (values == NULL || names == NULL) {
        return 0;
    }
    for (int64_t i = 0; i < attrs.nvalues; i++) {
        uint64_t value;
        uint64_t name;
        memcpy(&value, values + i * 8, 8);
        memcpy(&name, names + i * 16, 8);
        if (value != 0) {
            int result = fn(ctx, value, CS_EDGE_ATTR, name, 0);
            if (result != 0) {
                return result;
            }
        }
    }
    return 0;
}

static int
visit_kind(cs_scanner *s, uint64_t obj, cs_type *t, cs_visit_fn fn, void *ctx)
{
    const cs_layout *lay = s->lay;
    switch (t->kind) {
    case CS_KIND_TUPLE:
        return visit_tuple(s, obj, fn, ctx);
    case CS_KIND_LIST:
        return visit_list(s, obj, fn, ctx);
    case CS_KIND_DICT:
        return visit_dict(s, obj, fn, ctx);
    case CS_KIND_SET:
        return visit_set(s, obj, fn, ctx);
    case CS_KIND_DEQUE:
        return visit_deque(s, obj, fn, ctx);
    case CS_KIND_MODULE: {
        uint64_t dict = cs_word(&s->image, obj + lay->module_dict);
        return dict == 0 ? 0 : fn(ctx, dict, CS_EDGE_MODULE_DICT, 0, 0);
    }
    case CS_KIND_TYPE: {
        uint64_t dict = cs_word(&s->image, obj + lay->type_dict);
        return dict == 0 ? 0 : fn(ctx, dict, CS_EDGE_TYPE_DICT, 0, 0);
    }
    case CS_KIND_FUNCTION:
        return visit_function(s, obj, fn, ctx);
    case CS_KIND_CELL:
        return visit_named(s, obj + (uint64_t)lay->cell_ref,
                           CS_FIELD_CELL_CONTENTS, fn, ctx);
    case CS_KIND_METHOD: {
        int result = visit_named(s, obj + (uint64_t)lay->method_self,
                                 CS_FIELD_SELF, fn, ctx);
        return result != 0 ? result
                           : visit_named(s, obj + (uint64_t)lay->method_func,
                                         CS_FIELD_FUNC, fn, ctx);
    }
    case CS_KIND_CODE: {
        /* co_consts and co_names by name; then every other word (the
           names of variables, the file name, the line table). */
        int result = visit_named(s, obj + (uint64_t)lay->code_consts,
                                 CS_FIELD_CONSTS, fn, ctx);
        if (result == 0) {
            result = visit_named(s, obj + (uint64_t)lay->code_names,
                                 CS_FIELD_NAMES, fn, ctx);
        }
        return result != 0 ? result
                           : visit_fields(s, obj, t, CS_OBJECT_SIZE,
                                          t->basicsize, fn, ctx);
    }
    default:
        return 0; /* scalars, weak references, descriptors: no edges */
    }
}

/* Objects of unknown layout (CS_KIND_OTHER, and static types that only
   have object as a base) are read conservatively, word by word. */
static int
is_generic(const cs_type *t)
{
    return t->kind == CS_KIND_OTHER || t->kind == CS_KIND_OBJECT;
}

int
cs_visit_referents(cs_scanner *s, uint64_t obj, cs_type *t, cs_visit_fn fn,
                   void *ctx)
{
    int result = visit_kind(s, obj, t, fn, ctx);
    if (result != 0 || t->kind == CS_KIND_TYPE
        || (!is_generic(t) && !cs_type_is_heap(t))) {
        return result;
    }
    /* Instances of classes, and objects of unknown layout: the instance
       dict or values, then the fields (slots of a class, or words). */
    result = visit_attrs(s, obj, t, fn, ctx);
    if (result != 0) {
        return result;
    }
    int64_t from = is_generic(t) ? CS_OBJECT_SIZE : t->base_basicsize;
    int64_t to = t->basicsize;
    uint64_t body;
    if (is_generic(t) && !cs_type_is_heap(t) && t->itemsize == 8
        && var_body(s, obj, t, &body) == 0) {
        to = (int64_t)body;
    }
    return visit_fields(s, obj, t, from, to, fn, ctx);
}

/* ---- code objects and their names --------------------------------------- */

uint64_t
cs_tuple_item(cs_scanner *s, uint64_t tuple, int64_t index)
{
    int64_t count = cs_sword(&s->image, tuple + CS_OB_SIZE);
    if (tuple == 0 || index < 0 || index >= count) {
        return 0;
    }
    return cs_word(&s->image, tuple + (uint64_t)s->lay->tuple_items
                                  + (uint64_t)index * 8);
}

static int64_t
tuple_length(cs_scanner *s, uint64_t tuple)
{
    return tuple == 0 ? 0 : cs_sword(&s->image, tuple + CS_OB_SIZE);
}

uint64_t
cs_closure_name(cs_scanner *s, uint64_t func, uint64_t index)
{
    const cs_layout *lay = s->lay;
    uint64_t code = cs_word(&s->image, func + lay->func_code);
    if (code == 0) {
        return 0;
    }
    if (lay->code_freevars >= 0) {
        uint64_t names = cs_word(&s->image, code + lay->code_freevars);
        return cs_tuple_item(s, names, (int64_t)index);
    }
    /* 3.11+: the free variables are the last co_nfreevars names of
       co_localsplusnames. */
    uint64_t names = cs_word(&s->image, code + lay->code_localsplusnames);
    int64_t total = (int32_t)cs_u32(&s->image, code + lay->code_nlocalsplus);
    int64_t nfree = (int32_t)cs_u32(&s->image, code + lay->code_nfreevars);
    return cs_tuple_item(s, names, total - nfree + (int64_t)index);
}

uint64_t
cs_local_name(cs_scanner *s, uint64_t code, uint64_t index)
{
    const cs_layout *lay = s->lay;
    if (lay->code_localsplusnames >= 0) {
        uint64_t names = cs_word(&s->image, code + lay->code_localsplusnames);
        return cs_tuple_item(s, names, (int64_t)index);
    }
    /* 3.10: f_localsplus is co_varnames, then co_cellvars, then
       co_freevars. */
    const int32_t tuples[]
        = {lay->code_varnames, lay->code_cellvars, lay->code_freevars};
    int64_t rest = (int64_t)index;
    for (size_t i = 0; i < 3; i++) {
        uint64_t names = cs_word(&s->image, code + (uint64_t)tuples[i]);
        int64_t count = tuple_length(s, names);
        if (rest < count) {
            return cs_tuple_item(s, names, rest);
        }
        rest -= count;
    }
    return 0;
}

int64_t
cs_code_nlocals(cs_scanner *s, uint64_t code)
{
    const cs_layout *lay = s->lay;
    if (cs_image_ptr(&s->image, code, (uint64_t)lay->code_name + 8) == NULL) {
        return -1;
    }
    if (lay->code_nlocalsplus >= 0) {
        return (int32_t)cs_u32(&s->image, code + lay->code_nlocalsplus);
    }
    int64_t total = 0;
    const int32_t tuples[]
        = {lay->code_varnames, lay->code_cellvars, lay->code_freevars};
    for (size_t i = 0; i < 3; i++) {
        total
            += tuple_length(s, cs_word(&s->image, code + (uint64_t)tuples[i]));
    }
    return total;
}
