/* image.c - segment lookup for the memory image (see image.h). */
#include "image.h"

#include <stdlib.h>

size_t
cs_image_find(cs_image *img, uint64_t addr)
{
    size_t low = 0;
    size_t high = img->nsegs;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        const cs_segment *seg = &img->segs[mid];
        if (addr < seg->start) {
            high = mid;
        }
        else if (addr >= seg->end) {
            low = mid + 1;
        }
        else {
            return mid;
        }
    }
    return img->nsegs;
}

static int
compare_segments(const void *a, const void *b)
{
    const cs_segment *left = a;
    const cs_segment *right = b;
    if (left->start != right->start) {
        return left->start < right->start ? -1 : 1;
    }
    return 0;
}

int
cs_image_prepare(cs_image *img)
{
    if (img->nsegs > 0) {
        qsort(img->segs, img->nsegs, sizeof(cs_segment), compare_segments);
    }
    for (size_t i = 1; i < img->nsegs; i++) {
        if (img->segs[i].start < img->segs[i - 1].end) {
            return -1;
        }
    }
    img->last = 0;
    return 0;
}

const char *
cs_image_cstr(cs_image *img, uint64_t addr, size_t max)
{
    const uint8_t *p = cs_image_ptr(img, addr, 1);
    if (p == NULL) {
        return NULL;
    }
    const cs_segment *seg = &img->segs[img->last];
    size_t room = (size_t)(seg->end - addr);
    size_t limit = room < max + 1 ? room : max + 1;
    if (memchr(p, '\0', limit) == NULL) {
        return NULL;
    }
    return (const char *)p;
}
