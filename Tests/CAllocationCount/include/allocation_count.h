#ifndef ALLOCATION_COUNT_H
#define ALLOCATION_COUNT_H

// Counts the heap allocations one thread makes between two calls, for the
// test that a training step allocates nothing. Linked into the test
// process only: it replaces malloc and its relatives there with versions
// that count and then call the C library's own.

/// Whether allocations go through the counter: not in a sanitizer build,
/// whose runtime brings its own allocator.
int allocation_count_available(void);

/// Starts counting this thread's allocations from zero.
void allocation_count_start(void);

/// Stops counting and returns how many allocations this thread made since
/// `allocation_count_start` (calls of malloc, calloc, realloc,
/// reallocarray, posix_memalign, aligned_alloc, memalign, valloc).
long allocation_count_stop(void);

#endif
