/* readmem.c - process_vm_readv with page skipping (see readmem.h). */
#define _GNU_SOURCE
#include "readmem.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

/* One call copies at most this much: a failure then costs a retry of at
   most this many bytes, page by page from the failing one. */
#define CHUNK ((uint64_t)64 << 20)

static uint64_t
page_size(void)
{
    long size = sysconf(_SC_PAGESIZE);
    return size > 0 ? (uint64_t)size : 4096;
}

/* Copies one chunk; returns the bytes copied (0 if the first page is
   unreadable), or -1 if the process cannot be read. */
static int64_t
read_chunk(pid_t pid, uint64_t start, uint8_t *dest, uint64_t length)
{
    struct iovec local = {dest, (size_t)length};
    struct iovec remote = {(void *)(uintptr_t)start, (size_t)length};
    ssize_t got = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (got >= 0) {
        return (int64_t)got;
    }
    if (errno == EFAULT || errno == EIO || errno == ENOMEM) {
        return 0;
    }
    return -1;
}

int64_t
cs_read_process(pid_t pid, uint64_t start, uint8_t *dest, uint64_t length)
{
    uint64_t page = page_size();
    uint64_t done = 0;
    int64_t copied = 0;
    while (done < length) {
        uint64_t want = length - done < CHUNK ? length - done : CHUNK;
        int64_t got = read_chunk(pid, start + done, dest + done, want);
        if (got < 0) {
            return -1;
        }
        copied += got;
        done += (uint64_t)got;
        if ((uint64_t)got < want) {
            /* Skip the page that failed, to the next page boundary. */
            uint64_t next = ((start + done) / page + 1) * page - start;
            done = next < length ? next : length;
        }
    }
    return copied;
}

void
cs_prefault(uint8_t *dest, uint64_t length)
{
#ifdef MADV_POPULATE_WRITE
    if (madvise(dest, (size_t)length, MADV_POPULATE_WRITE) == 0) {
        return;
    }
#endif
    uint64_t page = page_size();
    for (uint64_t i = 0; i < length; i += page) {
        ((volatile uint8_t *)dest)[i] = dest[i];
    }
}
