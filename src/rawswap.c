/* rawswap.c - swap the RAW domain's allocator under running threads
 * (why: rawswap.h).
 *
 * Where CPython's struct is:
 * - 3.12 and later: _PyRuntime.allocators.standard.raw, from the internal
 *   headers, guarded by _PyRuntime.allocators.mutex;
 * - 3.10 and 3.11: a static variable of obmalloc.c, _PyMem_Raw, which no
 *   header names.  PyMem_RawMalloc reads it RIP-relative, so its first
 *   instructions give the address.
 * Either way, the struct found must hold exactly what PyMem_GetAllocator
 * returns, or it is not used.
 */
#define Py_BUILD_CORE 1
#include <Python.h>

#if PY_VERSION_HEX >= 0x030C0000
#include <internal/pycore_runtime.h>
#endif

#include <stdint.h>
#include <string.h>

#if PY_VERSION_HEX < 0x030C0000 && defined(__x86_64__) && defined(__linux__)
#include <elf.h>
#include <link.h>
#define LH_RAWSWAP_SCAN 1
#endif

#include "rawswap.h"

/* The RAW domain's struct, once found (or NULL: fall back). */
static PyMemAllocatorEx *lh_raw_struct;
static int lh_raw_looked;

#ifdef LH_RAWSWAP_SCAN

/* A range of memory to check against the loaded objects' segments. */
typedef struct {
    uintptr_t begin;
    uintptr_t end;
    int writable; /* in a writable, not read-only-after-relocation, segment */
    int found;    /* inside a readable segment */
} lh_range_query;

static int
inside(uintptr_t begin, uintptr_t end, uintptr_t seg_begin, uintptr_t seg_end)
{
    return begin >= seg_begin && end <= seg_end;
}

static int
check_object(struct dl_phdr_info *info, size_t size, void *data)
{
    lh_range_query *q = data;
    (void)size;
    for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t begin = info->dlpi_addr + ph->p_vaddr;
        uintptr_t end = begin + ph->p_memsz;
        if (!inside(q->begin, q->end, begin, end)) {
            continue;
        }
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_R)) {
            q->found = 1;
            q->writable = (ph->p_flags & PF_W) != 0;
        }
    }
    /* Read-only after relocation: a const copy, never the live struct. */
    for (ElfW(Half) i = 0; q->found && i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t begin = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_GNU_RELRO
            && q->end > begin && q->begin < begin + ph->p_memsz) {
            q->writable = 0;
        }
    }
    return q->found;
}

/* Whether [begin, begin + len) is mapped readable (and, if `writable`,
   writable) as part of a loaded object: reading it cannot fault. */
static int
mapped(uintptr_t begin, size_t len, int writable)
{
    lh_range_query q = {begin, begin + len, 0, 0};
    dl_iterate_phdr(check_object, &q);
    return q.found && (!writable || q.writable);
}

/* Whether `addr` holds the RAW domain's allocator, `current`. */
static int
is_raw_struct(uintptr_t addr, const PyMemAllocatorEx *current)
{
    return addr % sizeof(void *) == 0
           && mapped(addr, sizeof(*current), 1)
           && memcmp((const void *)addr, current, sizeof(*current)) == 0;
}

/* The struct that PyMem_RawMalloc's first instructions read through a
   RIP-relative operand: `mov disp(%rip), %reg` (REX.W 8B, ModRM with
   mod 00 and r/m 101) loads its ctx or a function, `jmp *disp(%rip)`
   (FF 25) jumps through a function.  Each operand may point at any of the
   struct's five words. */
static PyMemAllocatorEx *
scan_raw_malloc(const PyMemAllocatorEx *current)
{
    enum { SCAN = 64 };
    const unsigned char *code = (const unsigned char *)(uintptr_t)
        PyMem_RawMalloc;
    if (!mapped((uintptr_t)code, SCAN, 0)) {
        return NULL;
    }
    for (int i = 0; i + 7 <= SCAN; i++) {
        int disp_at;
        if ((code[i] == 0x48 || code[i] == 0x4c) && code[i + 1] == 0x8b
            && (code[i + 2] & 0xc7) == 0x05) {
            disp_at = i + 3;
        }
        else if (code[i] == 0xff && code[i + 1] == 0x25) {
            disp_at = i + 2;
        }
        else {
            continue;
        }
        int32_t disp;
        memcpy(&disp, code + disp_at, sizeof(disp));
        uintptr_t target = (uintptr_t)(code + disp_at + 4) + (intptr_t)disp;
        for (int word = 0; word < 5; word++) {
            uintptr_t addr = target - (uintptr_t)word * sizeof(void *);
            if (is_raw_struct(addr, current)) {
                return (PyMemAllocatorEx *)addr;
            }
        }
    }
    return NULL;
}

#endif /* LH_RAWSWAP_SCAN */

static PyMemAllocatorEx *
find_raw_struct(void)
{
    PyMemAllocatorEx current;
    PyMem_GetAllocator(PYMEM_DOMAIN_RAW, &current);
#if PY_VERSION_HEX >= 0x030C0000
    PyMemAllocatorEx *raw = &_PyRuntime.allocators.standard.raw;
    return memcmp(raw, &current, sizeof(current)) == 0 ? raw : NULL;
#elif defined(LH_RAWSWAP_SCAN)
    return scan_raw_malloc(&current);
#else
    return NULL;
#endif
}

static PyMemAllocatorEx *
raw_struct(void)
{
    if (!lh_raw_looked) {
        lh_raw_looked = 1;
        lh_raw_struct = find_raw_struct();
    }
    return lh_raw_struct;
}

/* CPython's own lock on the allocators, where it has one: another thread
   may call PyMem_GetAllocator or PyMem_SetAllocator. */
static void
lock_allocators(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyMutex_Lock(&_PyRuntime.allocators.mutex);
#elif PY_VERSION_HEX >= 0x030C0000
    if (_PyRuntime.allocators.mutex != NULL) {
        PyThread_acquire_lock(_PyRuntime.allocators.mutex, WAIT_LOCK);
    }
#endif
}

static void
unlock_allocators(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyMutex_Unlock(&_PyRuntime.allocators.mutex);
#elif PY_VERSION_HEX >= 0x030C0000
    if (_PyRuntime.allocators.mutex != NULL) {
        PyThread_release_lock(_PyRuntime.allocators.mutex);
    }
#endif
}

/* The four functions, each in one store; ctx last, and only if it
   differs (it does not when the caller keeps the domain's). */
static void
store_fields(PyMemAllocatorEx *dst, const PyMemAllocatorEx *src)
{
    __atomic_store_n(&dst->malloc, src->malloc, __ATOMIC_RELEASE);
    __atomic_store_n(&dst->calloc, src->calloc, __ATOMIC_RELEASE);
    __atomic_store_n(&dst->realloc, src->realloc, __ATOMIC_RELEASE);
    __atomic_store_n(&dst->free, src->free, __ATOMIC_RELEASE);
    if (__atomic_load_n(&dst->ctx, __ATOMIC_RELAXED) != src->ctx) {
        __atomic_store_n(&dst->ctx, src->ctx, __ATOMIC_RELEASE);
    }
}

void
lh_rawswap_install(const PyMemAllocatorEx *functions)
{
    PyMemAllocatorEx *raw = raw_struct();
    if (raw == NULL) {
        PyMemAllocatorEx current;
        PyMem_GetAllocator(PYMEM_DOMAIN_RAW, &current);
        PyMemAllocatorEx next = *functions;
        next.ctx = current.ctx;
        PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &next);
        return;
    }
    lock_allocators();
    PyMemAllocatorEx next = *functions;
    next.ctx = raw->ctx;
    store_fields(raw, &next);
    unlock_allocators();
}

void
lh_rawswap_copy(PyMemAllocatorEx *dst, const PyMemAllocatorEx *src)
{
    store_fields(dst, src);
}

int
lh_rawswap_in_place(void)
{
    return raw_struct() != NULL;
}
