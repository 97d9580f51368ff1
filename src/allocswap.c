/* allocswap.c - swap CPython's allocators under running threads (why:
 * allocswap.h).
 *
 * Where CPython's structs are:
 * - 3.12 and later: _PyRuntime.allocators.standard.{raw,mem,obj}, from
 *   the internal headers, guarded by _PyRuntime.allocators.mutex;
 * - 3.10 and 3.11: static variables of obmalloc.c, which no header
 *   names.  Only RAW's is needed (one GIL serializes every MEM and OBJ
 *   caller), and PyMem_RawMalloc reads it RIP-relative, so its first
 *   instructions give the address.
 * Either way, a struct found must hold exactly what PyMem_GetAllocator
 * returns, or it is not used.
 */
#define Py_BUILD_CORE 1
#include <Python.h>

#if PY_VERSION_HEX >= 0x030C0000
#include <internal/pycore_runtime.h>
#endif

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if PY_VERSION_HEX < 0x030C0000 && defined(__x86_64__) && defined(__linux__)
#include <elf.h>
#include <link.h>
#define LH_SWAP_SCAN 1
#endif

#include "allocswap.h"

#define LH_SWAP_DOMAINS 3

/* Each domain's struct, once looked for (NULL: PyMem_SetAllocator). */
static PyMemAllocatorEx *lh_swap_struct[LH_SWAP_DOMAINS];
static int lh_swap_looked[LH_SWAP_DOMAINS];

#ifdef LH_SWAP_SCAN

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

#endif /* LH_SWAP_SCAN */

static PyMemAllocatorEx *
find_struct(PyMemAllocatorDomain domain)
{
    PyMemAllocatorEx current;
    PyMem_GetAllocator(domain, &current);
#if PY_VERSION_HEX >= 0x030C0000
    PyMemAllocatorEx *found = domain == PYMEM_DOMAIN_RAW
                                  ? &_PyRuntime.allocators.standard.raw
                              : domain == PYMEM_DOMAIN_MEM
                                  ? &_PyRuntime.allocators.standard.mem
                                  : &_PyRuntime.allocators.standard.obj;
    return memcmp(found, &current, sizeof(current)) == 0 ? found : NULL;
#elif defined(LH_SWAP_SCAN)
    return domain == PYMEM_DOMAIN_RAW ? scan_raw_malloc(&current) : NULL;
#else
    return NULL;
#endif
}

static PyMemAllocatorEx *
domain_struct(PyMemAllocatorDomain domain)
{
    if (!lh_swap_looked[domain]) {
        lh_swap_looked[domain] = 1;
        lh_swap_struct[domain] = find_struct(domain);
    }
    return lh_swap_struct[domain];
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
lh_allocswap_install(PyMemAllocatorDomain domain,
                     const PyMemAllocatorEx *allocator)
{
    PyMemAllocatorEx next = *allocator;
    PyMemAllocatorEx *target = domain_struct(domain);
    if (target == NULL) {
        if (domain == PYMEM_DOMAIN_RAW) {
            PyMemAllocatorEx current;
            PyMem_GetAllocator(domain, &current);
            next.ctx = current.ctx;
        }
        PyMem_SetAllocator(domain, &next);
        return;
    }
    lock_allocators();
    if (domain == PYMEM_DOMAIN_RAW) {
        next.ctx = target->ctx;
    }
    store_fields(target, &next);
    unlock_allocators();
}

void
lh_allocswap_prepare_ctx(PyMemAllocatorDomain domain,
                         const PyMemAllocatorEx *replaced, lh_hook_ctx *ours)
{
#if PY_VERSION_HEX >= 0x030C0000
    /* Before 3.12 no thread calls MEM or OBJ while start() or stop() runs
       (one GIL), so only a struct from 3.12 is ever read this way. */
    _Static_assert(sizeof(lh_hook_ctx) == sizeof(debug_alloc_api_t) &&
                       offsetof(lh_hook_ctx, alloc) ==
                           offsetof(debug_alloc_api_t, alloc),
                   "lh_hook_ctx must be laid out as debug_alloc_api_t");
    const debug_alloc_api_t *debug = NULL;
    if (domain == PYMEM_DOMAIN_MEM) {
        debug = &_PyRuntime.allocators.debug.mem;
    }
    else if (domain == PYMEM_DOMAIN_OBJ) {
        debug = &_PyRuntime.allocators.debug.obj;
    }
    if (debug == NULL || replaced->ctx != (const void *)debug) {
        return;
    }
    __atomic_store_n(&ours->api_id, debug->api_id, __ATOMIC_RELEASE);
    store_fields(&ours->alloc, &debug->alloc);
#else
    (void)domain;
    (void)replaced;
    (void)ours;
#endif
}

void
lh_allocswap_copy(PyMemAllocatorEx *dst, const PyMemAllocatorEx *src)
{
    store_fields(dst, src);
}

int
lh_allocswap_in_place(PyMemAllocatorDomain domain)
{
    return domain_struct(domain) != NULL;
}
