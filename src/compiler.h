/* compiler.h - what the C compiler is told about the hot path.
 *
 * The allocator hooks run on every allocation, so their common case must
 * sit in as few instruction-cache lines as possible: W1's own loop
 * already overflows that cache.  GCC lays a function out by its guess of
 * which branches are taken, and inlines the hooks' rarer turns (the
 * general path, sampling, the tag's slow read) into the middle of it.
 * A function marked LH_COLD is kept out of line, optimized for size and
 * placed apart (.text.unlikely), and every path that calls it is taken to
 * be rare, so its callers' common case is laid out straight.
 */
#ifndef PYLEAKHUNT_COMPILER_H
#define PYLEAKHUNT_COMPILER_H

#define LH_COLD __attribute__((noinline, cold))

#endif /* PYLEAKHUNT_COMPILER_H */
