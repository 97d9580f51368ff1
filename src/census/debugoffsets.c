/* debugoffsets.c - the target's own offsets (see debugoffsets.h). */
#include "debugoffsets.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define COOKIE "xdebugpy"
/* No struct the census reads is this big: a bigger "offset" is not one. */
#define MAX_OFFSET (1 << 20)
/* PY_VERSION_HEX: 0x030E0AF0 is 3.14.10, final (level 0xF). */
#define HEX_MAJOR(v) (((v) >> 24) & 0xFF)
#define HEX_MINOR(v) (((v) >> 16) & 0xFF)
#define HEX_MICRO(v) (((v) >> 8) & 0xFF)
#define HEX_LEVEL(v) (((v) >> 4) & 0xF)
#define LEVEL_FINAL 0xF

/* The first patch release of 3.14 with the generational collector
   (CPython gh-148726); 3.14.0-3.14.4 ran the incremental one.  3.13 and
   3.15 releases are generational. */
#define FIRST_GENERATIONAL_314 5

static int
check_version(cs_scanner *s, uint64_t version)
{
    int minor = s->layout.minor;
    if (HEX_MAJOR(version) != 3 || (int)HEX_MINOR(version) != minor) {
        return cs_fail(s,
                       "the target's _Py_DebugOffsets say Python %d.%d.%d, "
                       "not the 3.%d of its interpreter file (was the "
                       "file replaced while the process ran?)",
                       (int)HEX_MAJOR(version), (int)HEX_MINOR(version),
                       (int)HEX_MICRO(version), minor);
    }
    /* The table itself changed during 3.15's betas: a pre-release's
       table may not be the one the row describes. */
    if (HEX_LEVEL(version) != LEVEL_FINAL) {
        return cs_fail(s,
                       "the target is a pre-release of Python 3.%d "
                       "(PY_VERSION_HEX %#" PRIx64 "); only final releases "
                       "are supported",
                       minor, version);
    }
    return 0;
}

static int
read_table_header(cs_scanner *s)
{
    const cs_debug_map *map = &s->layout.dbg;
    const uint8_t *table
        = cs_image_ptr(&s->image, s->runtime, (uint64_t)map->table_size);
    if (table == NULL) {
        return cs_fail(s, "_PyRuntime is not in the memory image: its "
                          "_Py_DebugOffsets cannot be read");
    }
    if (memcmp(table, COOKIE, strlen(COOKIE)) != 0) {
        return cs_fail(s,
                       "_PyRuntime does not start with the _Py_DebugOffsets "
                       "cookie \"%s\": not a CPython 3.%d runtime, or damaged "
                       "memory",
                       COOKIE, s->layout.minor);
    }
    uint64_t version;
    uint64_t free_threaded;
    memcpy(&version, table + map->version, 8);
    memcpy(&free_threaded, table + map->free_threaded, 8);
    if (check_version(s, version) < 0) {
        return -1;
    }
    if (free_threaded != 0) {
        return cs_fail(s, "the target is a free-threaded build of Python "
                          "3.%d; only the default (GIL) build is supported",
                       s->layout.minor);
    }
    s->target.hexversion = version;
    return 0;
}

static int
copy_fields(cs_scanner *s)
{
    size_t count = cs_debug_field_count();
    for (size_t i = 0; i < count; i++) {
        int32_t position = cs_debug_field_position(&s->layout, i);
        if (position <= 0) {
            continue; /* not in this version's table */
        }
        uint64_t value = cs_word(&s->image, s->runtime + (uint64_t)position);
        if (value >= MAX_OFFSET) {
            return cs_fail(s,
                           "the target's _Py_DebugOffsets give %s = %" PRIu64
                           ", not a plausible offset: damaged memory",
                           cs_debug_field_names[i], value);
        }
        *cs_debug_field(&s->layout, i) = (int32_t)value;
        s->target.fields_read++;
    }
    return 0;
}

int
cs_debug_offsets_read(cs_scanner *s)
{
    if (s->layout.dbg.table_size <= 0) {
        return 0; /* 3.10-3.12: no table, the row is all there is */
    }
    if (read_table_header(s) < 0 || copy_fields(s) < 0) {
        return -1;
    }
    s->target.incremental_gc
        = s->layout.minor == 14
          && HEX_MICRO(s->target.hexversion) < FIRST_GENERATIONAL_314;
    return 0;
}
