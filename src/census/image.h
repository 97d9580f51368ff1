/* image.h - a read-only picture of another process's address space.
 *
 * The census never reads the target directly: Python hands it a list of
 * segments, each a start address and a buffer holding the bytes found
 * there (a slice of an mmap'ed core file, a mapped ELF file, or a copy of
 * a live process's memory).  Every read goes through cs_image_ptr(),
 * which answers NULL unless the whole range lies inside one segment, so a
 * wild pointer found in the target (and every pointer there is untrusted)
 * costs one failed lookup, never a crash.
 *
 * Segments are sorted and disjoint.  Lookups first try the segment of the
 * previous hit: a walk over the gc lists or one container stays within a
 * few segments, so most lookups end there; the rest use binary search.
 */
#ifndef PYLEAKHUNT_CENSUS_IMAGE_H
#define PYLEAKHUNT_CENSUS_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The target could write this memory: scan it for objects. */
#define CS_SEG_WRITABLE 0x1u
/* The memory comes from a file mapping (the .data of a library): static
   type objects live there. */
#define CS_SEG_FILE 0x2u

typedef struct {
    uint64_t start;      /* first address */
    uint64_t end;        /* one past the last address */
    const uint8_t *data; /* the bytes of [start, end) */
    unsigned int flags;  /* CS_SEG_* */
} cs_segment;

typedef struct {
    cs_segment *segs; /* sorted by start, disjoint */
    size_t nsegs;
    size_t last; /* index of the segment that answered the last lookup */
} cs_image;

/* Index of the segment holding `addr`, or nsegs.  Out of line: the hit
   test in cs_image_ptr() is the common case. */
size_t cs_image_find(cs_image *img, uint64_t addr);

/* Sorts the segments and checks that they do not overlap.  Returns 0, or
   -1 if two segments overlap. */
int cs_image_prepare(cs_image *img);

/* A pointer to the `size` bytes at `addr`, or NULL if any of them is
   outside the segment that holds `addr`. */
static inline const uint8_t *
cs_image_ptr(cs_image *img, uint64_t addr, uint64_t size)
{
    if (img->nsegs == 0) {
        return NULL;
    }
    const cs_segment *seg = &img->segs[img->last];
    if (addr < seg->start || addr >= seg->end) {
        size_t index = cs_image_find(img, addr);
        if (index == img->nsegs) {
            return NULL;
        }
        img->last = index;
        seg = &img->segs[index];
    }
    if (size > seg->end - addr) {
        return NULL;
    }
    return seg->data + (addr - seg->start);
}

/* The 64-bit word at `addr` in *out; -1 (and *out = 0) if unreadable. */
static inline int
cs_read_u64(cs_image *img, uint64_t addr, uint64_t *out)
{
    const uint8_t *p = cs_image_ptr(img, addr, 8);
    if (p == NULL) {
        *out = 0;
        return -1;
    }
    memcpy(out, p, 8);
    return 0;
}

/* The word at `addr`, or 0 if unreadable: for fields where 0 (NULL) is
   already the "nothing here" answer. */
static inline uint64_t
cs_word(cs_image *img, uint64_t addr)
{
    uint64_t value;
    cs_read_u64(img, addr, &value);
    return value;
}

static inline int64_t
cs_sword(cs_image *img, uint64_t addr)
{
    return (int64_t)cs_word(img, addr);
}

/* The 32-bit and 8-bit values at `addr`, or 0 if unreadable. */
static inline uint32_t
cs_u32(cs_image *img, uint64_t addr)
{
    const uint8_t *p = cs_image_ptr(img, addr, 4);
    uint32_t value = 0;
    if (p != NULL) {
        memcpy(&value, p, 4);
    }
    return value;
}

static inline uint8_t
cs_u8(cs_image *img, uint64_t addr)
{
    const uint8_t *p = cs_image_ptr(img, addr, 1);
    return p == NULL ? 0 : *p;
}

/* The NUL-terminated string at `addr`, at most `max` bytes long before
   the NUL; NULL if unreadable or longer. */
const char *cs_image_cstr(cs_image *img, uint64_t addr, size_t max);

#endif
