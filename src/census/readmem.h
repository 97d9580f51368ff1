/* readmem.h - copying a live process's memory.
 *
 * process_vm_readv() copies straight from the target's pages into ours,
 * once; reading /proc/PID/mem goes through a kernel page in between, and
 * measured about twice as slow.  The target is read, never written.
 *
 * The copy is what a stopped target waits for, so the destination is
 * faulted in before the target is stopped (cs_prefault), rather than page
 * by page during the copy.
 */
#ifndef PYLEAKHUNT_CENSUS_READMEM_H
#define PYLEAKHUNT_CENSUS_READMEM_H

#include <stdint.h>
#include <sys/types.h>

/* Copies `length` bytes at `start` in process `pid` to `dest`.  Pages the
   kernel refuses (guard pages, a mapping that went away) are skipped and
   left as they were in `dest`.  Returns the bytes copied, or -1 with errno
   set if the process cannot be read at all (ESRCH, EPERM). */
int64_t cs_read_process(pid_t pid, uint64_t start, uint8_t *dest,
                        uint64_t length);

/* Makes every page of [dest, dest + length) resident and writable. */
void cs_prefault(uint8_t *dest, uint64_t length);

#endif
