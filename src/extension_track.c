/* extension_track.c - receive extensions' PyTraceMalloc_Track/Untrack
 * calls by redirecting the GOT slots they go through.
 *
 * An extension module calls PyTraceMalloc_Track through an entry of its
 * own global offset table (GOT), which the dynamic loader filled with the
 * interpreter's function.  While pyleakhunt traces, each such entry in
 * each loaded ELF object holds one of our functions instead: it passes the
 * call on to the interpreter's (so the stdlib tracemalloc hears of it, as
 * it would without us) and records the block through the tracer's C API
 * path (hooks.c, lh_track), in the caller's domain with its traceback.
 *
 * The entries are found from the objects' dynamic sections: the PLT
 * relocations (DT_JMPREL) and the others (DT_RELA, for code built with
 * -fno-plt), named through DT_SYMTAB/DT_STRTAB.  An entry the loader made
 * read-only after relocating (RELRO) is made writable just for the store.
 *
 * Objects loaded after start(): the interpreter imports an extension with
 * dlopen() and only then calls its PyInit function, so our dlopen() (in
 * the interpreter's own GOT) scans the new objects when the real one
 * returns: before the module's code has run at all, so before its first
 * Track call.  A snapshot also scans anything new (libraries loaded by
 * other means, such as ctypes), for their later calls.
 */
#include "extension_track.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "hooks.h"
#include "state.h"

#define S lh_tracer
#define E lh_tracer.ext

#if LH_EXT_TRACK_SUPPORTED

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- the replacements ------------------------------------------------ */

static int track_hook(unsigned int domain, uintptr_t ptr, size_t size);
static int untrack_hook(unsigned int domain, uintptr_t ptr);
static void *dlopen_hook(const char *file, int mode);

enum { T_TRACK, T_UNTRACK, T_DLOPEN, T_COUNT };

typedef struct {
    const char *name;
    void *hook;
    /* Redirected only in the interpreter (the object that defines
       PyTraceMalloc_Track): that is where imports call dlopen(), always
       with a path that has a slash, so the caller's own search path,
       which dlopen() reads from its return address, plays no part.
       Other objects' dlopen() calls are left alone for that reason. */
    int interpreter_only;
} lh_target;

static const lh_target targets[T_COUNT] = {
    {"PyTraceMalloc_Track", (void *)track_hook, 0},
    {"PyTraceMalloc_Untrack", (void *)untrack_hook, 0},
    {"dlopen", (void *)dlopen_hook, 1},
};

static inline int
is_tracing(void)
{
    return atomic_load_explicit(&S.tracing, memory_order_relaxed);
}

/* Whether the Python heap's table already holds `ptr`: memory taken with
   PyMem_RawMalloc (traced there) and then also reported to tracemalloc in
   a domain of its own.  tracemalloc would count it twice, once per
   domain; it is one block, so it stays where the allocator hook put it. */
static int
traced_in_python_heap(uintptr_t ptr)
{
    uint32_t site_id;
    size_t size;
    lh_hooks_lock();
    int found = is_tracing()
                && lh_blocks_get(&S.blocks, ptr, &site_id, &size);
    lh_hooks_unlock();
    return found;
}

static int
track_hook(unsigned int domain, uintptr_t ptr, size_t size)
{
    /* The interpreter's function returns at once unless the stdlib
       tracemalloc traces, and then it wants the call too. */
    int theirs = PyTraceMalloc_Track(domain, ptr, size);
    if (!is_tracing()) {
        return theirs;
    }
    if (domain != LH_PYTHON_DOMAIN && ptr != 0
        && traced_in_python_heap(ptr)) {
        return 0;
    }
    /* Any thread, with or without the GIL: lh_track takes the lock's slow
       side when it does not hold the GIL, and never takes the GIL. */
    return lh_track(domain, ptr, size);
}

static int
untrack_hook(unsigned int domain, uintptr_t ptr)
{
    int theirs = PyTraceMalloc_Untrack(domain, ptr);
    if (!is_tracing()) {
        return theirs;
    }
    return lh_untrack(domain, ptr);
}

static void *
dlopen_hook(const char *file, int mode)
{
    void *handle = dlopen(file, mode);
    if (handle != NULL && is_tracing()) {
        int saved = errno;
        lh_ext_track_refresh();
        errno = saved;
    }
    return handle;
}

/* ---- reading an ELF object ------------------------------------------- */

static uintptr_t page_size;

typedef struct {
    const struct dl_phdr_info *info;
    const ElfW(Sym) *symtab;
    const char *strtab;
    size_t strsz;
    const ElfW(Rela) *rel[2]; /* DT_JMPREL, DT_RELA */
    size_t nrel[2];
    uintptr_t relro_start; /* pages the loader made read-only */
    uintptr_t relro_end;
    int interpreter;
} elf_object;

static int
object_contains(const struct dl_phdr_info *info, uintptr_t addr)
{
    for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && addr >= start
            && addr - start < ph->p_memsz) {
            return 1;
        }
    }
    return 0;
}

/* glibc rewrites the dynamic section's addresses to absolute ones when it
   loads an object; the vDSO's and other loaders' stay relative. */
static uintptr_t
dyn_address(uintptr_t bias, ElfW(Addr) value)
{
    return value < bias ? bias + value : value;
}

static void
read_relro(elf_object *obj, const ElfW(Phdr) *ph)
{
    /* The loader protects whole pages: the start's page, up to the page
       the end falls in (which stays writable). */
    uintptr_t start = obj->info->dlpi_addr + ph->p_vaddr;
    obj->relro_start = start & ~(page_size - 1);
    obj->relro_end = (start + ph->p_memsz) & ~(page_size - 1);
}

static void
read_dynamic(elf_object *obj, const ElfW(Dyn) *dyn)
{
    uintptr_t bias = obj->info->dlpi_addr;
    ElfW(Addr) jmprel = 0, rela = 0;
    size_t pltrelsz = 0, relasz = 0, relaent = sizeof(ElfW(Rela));
    ElfW(Sxword) pltrel = DT_RELA;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        switch (dyn->d_tag) {
        case DT_SYMTAB:
            obj->symtab =
                (const ElfW(Sym) *)dyn_address(bias, dyn->d_un.d_ptr);
            break;
        case DT_STRTAB:
            obj->strtab = (const char *)dyn_address(bias, dyn->d_un.d_ptr);
            break;
        case DT_STRSZ: obj->strsz = dyn->d_un.d_val; break;
        case DT_JMPREL: jmprel = dyn->d_un.d_ptr; break;
        case DT_PLTRELSZ: pltrelsz = dyn->d_un.d_val; break;
        case DT_PLTREL: pltrel = (ElfW(Sxword))dyn->d_un.d_val; break;
        case DT_RELA: rela = dyn->d_un.d_ptr; break;
        case DT_RELASZ: relasz = dyn->d_un.d_val; break;
        case DT_RELAENT: relaent = dyn->d_un.d_val; break;
        default: break;
        }
    }
    /* x86_64 uses RELA only; anything else is not an object we know. */
    if (jmprel != 0 && pltrel == DT_RELA) {
        obj->rel[0] = (const ElfW(Rela) *)dyn_address(bias, jmprel);
        obj->nrel[0] = pltrelsz / sizeof(ElfW(Rela));
    }
    if (rela != 0 && relaent == sizeof(ElfW(Rela))) {
        obj->rel[1] = (const ElfW(Rela) *)dyn_address(bias, rela);
        obj->nrel[1] = relasz / sizeof(ElfW(Rela));
    }
}

/* Returns 0 when the object has nothing to redirect (no dynamic section,
   no symbols: the vDSO, for one). */
static int
read_object(const struct dl_phdr_info *info, elf_object *obj)
{
    memset(obj, 0, sizeof(*obj));
    obj->info = info;
    const ElfW(Dyn) *dyn = NULL;
    for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_DYNAMIC) {
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + ph->p_vaddr);
        }
        else if (ph->p_type == PT_GNU_RELRO) {
            read_relro(obj, ph);
        }
    }
    if (dyn == NULL) {
        return 0;
    }
    read_dynamic(obj, dyn);
    if (obj->symtab == NULL || obj->strtab == NULL) {
        return 0;
    }
    /* Our own calls must reach the interpreter's functions. */
    if (object_contains(info, (uintptr_t)&lh_ext_track_init)) {
        return 0;
    }
    obj->interpreter =
        object_contains(info, (uintptr_t)(void *)&PyTraceMalloc_Track);
    return 1;
}

/* Which of `targets` the relocation `r` fills, or -1. */
static int
target_of(const elf_object *obj, const ElfW(Rela) *r)
{
    unsigned long type = ELF64_R_TYPE(r->r_info);
    size_t sym = ELF64_R_SYM(r->r_info);
    if ((type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT)
        || sym == 0) {
        return -1;
    }
    size_t offset = obj->symtab[sym].st_name;
    if (obj->strsz != 0 && offset >= obj->strsz) {
        return -1;
    }
    const char *name = obj->strtab + offset;
    for (int t = 0; t < T_COUNT; t++) {
        if ((obj->interpreter || !targets[t].interpreter_only)
            && strcmp(name, targets[t].name) == 0) {
            return t;
        }
    }
    return -1;
}

typedef void (*slot_visitor)(const elf_object *obj, void **slot, int target,
                             void *arg);

static void
visit_slots(const elf_object *obj, slot_visitor visit, void *arg)
{
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < obj->nrel[k]; i++) {
            const ElfW(Rela) *r = &obj->rel[k][i];
            int target = target_of(obj, r);
            if (target >= 0) {
                visit(obj, (void **)(obj->info->dlpi_addr + r->r_offset),
                      target, arg);
            }
        }
    }
}

/* ---- writing slots (mutex held) -------------------------------------- */

static int
write_slot(void **slot, void *value, int readonly)
{
    void *page = (void *)((uintptr_t)slot & ~(page_size - 1));
    if (readonly && mprotect(page, page_size, PROT_READ | PROT_WRITE) != 0) {
        return -1;
    }
    /* Other threads may call through the slot meanwhile: one aligned
       store, so they see the old function or the new one. */
    __atomic_store_n(slot, value, __ATOMIC_RELEASE);
    if (readonly) {
        /* If this fails the page stays writable, which breaks nothing. */
        (void)mprotect(page, page_size, PROT_READ);
    }
    return 0;
}

static lh_got_patch *
find_patch(void **slot)
{
    for (size_t i = 0; i < E.npatches; i++) {
        if (E.patches[i].slot == slot) {
            return &E.patches[i];
        }
    }
    return NULL;
}

/* Room for one more patch record; NULL when out of memory. */
static lh_got_patch *
new_patch(void)
{
    if (E.npatches == E.capacity) {
        size_t capacity = E.capacity ? E.capacity * 2 : 64;
        /* The C library's, not lh_mem_alloc: these records outlive
           stop() (repatch_known), and are not the traces whose memory
           get_tracemalloc_memory() reports. */
        lh_got_patch *bigger =
            realloc(E.patches, capacity * sizeof(lh_got_patch));
        if (bigger == NULL) {
            return NULL;
        }
        E.patches = bigger;
        E.capacity = capacity;
    }
    return &E.patches[E.npatches];
}

static void
patch_slot(const elf_object *obj, void **slot, int target, void *arg)
{
    (void)arg;
    void *hook = targets[target].hook;
    void *current = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (current == hook) {
        return;
    }
    /* A slot seen before whose value is no longer ours: an object loaded
       where an unloaded one was, or a lazy binding that raced our store.
       Either way the value there now is the one to put back. */
    lh_got_patch *patch = find_patch(slot);
    int fresh = patch == NULL;
    if (fresh && (patch = new_patch()) == NULL) {
        E.failures++;
        return;
    }
    uintptr_t at = (uintptr_t)slot;
    int readonly = at >= obj->relro_start && at < obj->relro_end;
    if (write_slot(slot, hook, readonly) < 0) {
        E.failures++;
        return;  /* a fresh record is simply not counted */
    }
    *patch = (lh_got_patch){slot, current, target, readonly};
    if (fresh) {
        E.npatches++;
    }
}

/* ---- scanning the loaded objects (mutex held) ------------------------ */

static int
was_scanned(uintptr_t bias)
{
    for (size_t i = 0; i < E.nscanned; i++) {
        if (E.scanned[i] == bias) {
            return 1;
        }
    }
    return 0;
}

static void
note_scanned(uintptr_t bias)
{
    if (E.nscanned == E.scanned_capacity) {
        size_t capacity = E.scanned_capacity ? E.scanned_capacity * 2 : 64;
        /* The C library's, as for the patch records (new_patch). */
        uintptr_t *bigger = realloc(E.scanned, capacity * sizeof(uintptr_t));
        if (bigger == NULL) {
            return;  /* it will be read again next time: harmless */
        }
        E.scanned = bigger;
        E.scanned_capacity = capacity;
    }
    E.scanned[E.nscanned++] = bias;
}

static int
scan_one(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    (void)data;
    if (was_scanned(info->dlpi_addr)) {
        return 0;
    }
    elf_object obj;
    if (read_object(info, &obj)) {
        visit_slots(&obj, patch_slot, NULL);
    }
    E.scans++;
    note_scanned(info->dlpi_addr);
    return 0;
}

typedef struct {
    unsigned long long adds;
    unsigned long long subs;
    int known; /* the C library reports them (glibc 2.4+) */
} load_counts;

static int
read_counts(struct dl_phdr_info *info, size_t size, void *data)
{
    load_counts *counts = data;
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs)
                    + sizeof(info->dlpi_subs)) {
        counts->adds = info->dlpi_adds;
        counts->subs = info->dlpi_subs;
        counts->known = 1;
    }
    return 1; /* the first object is enough */
}

/* What restore_one and forget_unmapped share. */
typedef struct {
    int restore; /* 1: put slots back; 0: only keep the records of slots
                    still ours */
    char *alive; /* per record: still in a loaded object, and ours */
} sweep;

static void
sweep_object(const struct dl_phdr_info *info, sweep *how)
{
    for (size_t i = 0; i < E.npatches; i++) {
        lh_got_patch *p = &E.patches[i];
        /* Read a slot only where an object is mapped now: its own may be
           gone (dlclose). */
        if (how->alive[i] || !object_contains(info, (uintptr_t)p->slot)
            || __atomic_load_n(p->slot, __ATOMIC_ACQUIRE)
                   != targets[p->target].hook) {
            continue;
        }
        how->alive[i] = 1;
        if (how->restore && write_slot(p->slot, p->saved, p->readonly) < 0) {
            E.failures++;
        }
    }
}

static int
sweep_one(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    sweep_object(info, data);
    return 0;
}

/* Walk the records against the objects loaded now: put back (`restore`)
   or leave alone the slots still ours, and keep the records of those only.
   Returns how many records were dropped. */
static size_t
sweep_patches(int restore)
{
    if (E.npatches == 0) {
        return 0;
    }
    sweep how = {restore, calloc(E.npatches, 1)};
    if (how.alive == NULL) {
        E.failures += E.npatches;
        return E.npatches;
    }
    dl_iterate_phdr(sweep_one, &how);
    size_t kept = 0;
    for (size_t i = 0; i < E.npatches; i++) {
        if (how.alive[i]) {
            E.patches[kept++] = E.patches[i];
        }
    }
    size_t dropped = E.npatches - kept;
    E.npatches = kept;
    free(how.alive);
    return dropped;
}

/* Forget every object read and every slot found: the next scan reads
   everything again. */
static void
forget_scans(void)
{
    E.npatches = 0;
    E.nscanned = 0;
}

/* Whether an object was unloaded since the last scan, or the C library
   cannot say. */
static int
unloaded_since_scan(void)
{
    load_counts counts = {0, 0, 0};
    dl_iterate_phdr(read_counts, &counts);
    return !counts.known || counts.subs != E.seen_subs;
}

/* Redirect again the slots that stop() put back.  Reading every loaded
   object's relocations costs about a millisecond (some 60 objects in a
   test run), and the pytest plugin starts and stops tracing around every
   test; the slots themselves are a handful.  Only valid while nothing was
   unloaded since they were found (the caller checks). */
static void
repatch_known(void)
{
    for (size_t i = 0; i < E.npatches; i++) {
        lh_got_patch *p = &E.patches[i];
        void *hook = targets[p->target].hook;
        /* Lazy binding may have filled the slot since: that value is the
           one to put back next time. */
        void *current = __atomic_load_n(p->slot, __ATOMIC_ACQUIRE);
        if (current == hook) {
            continue;
        }
        if (write_slot(p->slot, hook, p->readonly) < 0) {
            E.failures++; /* stop() will find it not ours, and drop it */
            continue;
        }
        p->saved = current;
    }
}

/* Scan what is new since the last scan.  After an unload, the addresses
   of the objects scanned so far may belong to new ones: forget them (and
   the records of slots no longer ours) and read everything again. */
static void
scan_new_objects(void)
{
    load_counts counts = {0, 0, 0};
    dl_iterate_phdr(read_counts, &counts);
    if (E.nscanned != 0 && counts.adds == E.seen_adds
        && counts.subs == E.seen_subs) {
        return;
    }
    if (counts.subs != E.seen_subs) {
        (void)sweep_patches(0);
        E.nscanned = 0;
    }
    E.seen_adds = counts.adds;
    E.seen_subs = counts.subs;
    dl_iterate_phdr(scan_one, NULL);
}

/* ---- the API --------------------------------------------------------- */

static void atfork_prepare(void) { pthread_mutex_lock(&E.mutex); }
static void atfork_release(void) { pthread_mutex_unlock(&E.mutex); }

void
lh_ext_track_init(void)
{
    if (E.ready) {
        return;
    }
    long size = sysconf(_SC_PAGESIZE);
    page_size = size > 0 ? (uintptr_t)size : 4096;
    if (pthread_mutex_init(&E.mutex, NULL) != 0) {
        return;  /* left unready: nothing is ever redirected */
    }
    /* A fork while another thread scans must not leave the child's mutex
       held by a thread it does not have. */
    if (pthread_atfork(atfork_prepare, atfork_release, atfork_release)
        != 0) {
        return;
    }
    E.ready = 1;
}

void
lh_ext_track_start(void)
{
    if (!E.ready) {
        return;
    }
    pthread_mutex_lock(&E.mutex);
    E.active = 1;
    if (E.nscanned != 0) {
        /* What an earlier start() found, if no object was unloaded since:
           an unloaded object's slots may now be another's memory. */
        if (unloaded_since_scan()) {
            forget_scans();
        }
        else {
            repatch_known();
        }
    }
    scan_new_objects();
    pthread_mutex_unlock(&E.mutex);
}

void
lh_ext_track_refresh(void)
{
    if (!E.ready) {
        return;
    }
    pthread_mutex_lock(&E.mutex);
    if (E.active) {
        scan_new_objects();
    }
    pthread_mutex_unlock(&E.mutex);
}

void
lh_ext_track_stop(void)
{
    if (!E.ready) {
        return;
    }
    pthread_mutex_lock(&E.mutex);
    if (E.active) {
        /* The records stay, for the next start() (repatch_known).  A slot
           that was no longer ours means someone else writes these slots:
           then the next start reads everything again. */
        if (sweep_patches(1) != 0) {
            forget_scans();
        }
        E.active = 0;
    }
    pthread_mutex_unlock(&E.mutex);
}

/* Slots of the redirected functions, collected without the GIL's help:
   no Python object is made while the loader's lock is held. */
typedef struct {
    const char *object;
    void **slot;
    void *value;
    int target;
} slot_row;

typedef struct {
    slot_row *rows;
    size_t n;
    size_t capacity;
    int failed;
} slot_list;

static void
list_slot(const elf_object *obj, void **slot, int target, void *arg)
{
    slot_list *list = arg;
    if (list->n == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 64;
        slot_row *bigger = realloc(list->rows, capacity * sizeof(slot_row));
        if (bigger == NULL) {
            list->failed = 1;
            return;
        }
        list->rows = bigger;
        list->capacity = capacity;
    }
    list->rows[list->n++] = (slot_row){
        obj->info->dlpi_name, slot, __atomic_load_n(slot, __ATOMIC_ACQUIRE),
        target};
}

static int
list_one(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    elf_object obj;
    if (read_object(info, &obj)) {
        visit_slots(&obj, list_slot, data);
    }
    return 0;
}

static PyObject *
slot_rows_to_list(const slot_list *list)
{
    PyObject *result = PyList_New(0);
    for (size_t i = 0; result != NULL && i < list->n; i++) {
        const slot_row *row = &list->rows[i];
        /* The object names stay valid: nothing is unloaded while the
           GIL is held here and CPython never unloads extensions. */
        PyObject *item = Py_BuildValue(
            "(ssKK)", row->object ? row->object : "",
            targets[row->target].name,
            (unsigned long long)(uintptr_t)row->slot,
            (unsigned long long)(uintptr_t)row->value);
        if (item == NULL || PyList_Append(result, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(result);
            break;
        }
        Py_DECREF(item);
    }
    return result;
}

PyObject *
lh_ext_track_slots(void)
{
    slot_list list = {NULL, 0, 0, 0};
    dl_iterate_phdr(list_one, &list);
    PyObject *result = list.failed ? PyErr_NoMemory()
                                   : slot_rows_to_list(&list);
    free(list.rows);
    return result;
}

static PyObject *
hook_addresses(void)
{
    PyObject *hooks = PyDict_New();
    for (int t = 0; hooks != NULL && t < T_COUNT; t++) {
        PyObject *address = PyLong_FromVoidPtr(targets[t].hook);
        if (address == NULL
            || PyDict_SetItemString(hooks, targets[t].name, address) < 0) {
            Py_XDECREF(address);
            Py_CLEAR(hooks);
        }
        Py_XDECREF(address);
    }
    return hooks;
}

PyObject *
lh_ext_track_info(void)
{
    if (!E.ready) {
        return Py_BuildValue("{sOss}", "supported", Py_False, "reason",
                             "could not set up a mutex or fork handler");
    }
    pthread_mutex_lock(&E.mutex);
    int active = E.active;
    size_t npatches = E.active ? E.npatches : 0; /* redirected now */
    unsigned long long scans = E.scans, failures = E.failures;
    pthread_mutex_unlock(&E.mutex);
    PyObject *hooks = hook_addresses();
    if (hooks == NULL) {
        return NULL;
    }
    return Py_BuildValue("{sOsOsOsnsKsKsN}", "supported", Py_True, "reason",
                         Py_None, "active", active ? Py_True : Py_False,
                         "patched_slots", (Py_ssize_t)npatches,
                         "objects_scanned", scans, "failures", failures,
                         "hooks", hooks);
}

#else /* !LH_EXT_TRACK_SUPPORTED */

#pragma message("pyleakhunt: extensions' PyTraceMalloc_Track calls are " \
                "only received on Linux x86_64")

void lh_ext_track_init(void) {}
void lh_ext_track_start(void) {}
void lh_ext_track_stop(void) {}
void lh_ext_track_refresh(void) {}

PyObject *
lh_ext_track_slots(void)
{
    return PyList_New(0);
}

PyObject *
lh_ext_track_info(void)
{
    return Py_BuildValue(
        "{sOss}", "supported", Py_False, "reason",
        "only on Linux x86_64: elsewhere extensions' PyTraceMalloc_Track "
        "calls reach only the stdlib tracemalloc");
}

#endif /* LH_EXT_TRACK_SUPPORTED */
