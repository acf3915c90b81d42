#define _GNU_SOURCE
#include "allocation_count.h"

#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

// Per thread, so that allocations of other threads (the test runner's, a
// progress redraw's) never count against the thread being measured.
static _Thread_local int counting;
static _Thread_local long counted;

void allocation_count_start(void) {
    counted = 0;
    counting = 1;
}

long allocation_count_stop(void) {
    counting = 0;
    return counted;
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define ALLOCATION_COUNT_SANITIZED 1
#endif
#endif

#ifdef ALLOCATION_COUNT_SANITIZED

int allocation_count_available(void) { return 0; }

#else

// glibc's allocator under its own names: the definitions below take the
// public names for the whole process (an executable's symbols come first
// in the dynamic linker's search), and forward here. free needs no
// replacement: every block still comes from glibc's allocator.
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *block, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);

int allocation_count_available(void) { return 1; }

// Whether `caller` lies in one of MPI's own libraries (libmpi, OpenMPI's
// plugins and its runtime): a collective there may take a scratch buffer
// per call, which no caller can hand it, so the count leaves those out.
static int in_mpi_library(void *caller) {
    Dl_info info;
    if (dladdr(caller, &info) == 0 || info.dli_fname == NULL) return 0;
    const char *name = strrchr(info.dli_fname, '/');
    name = name ? name + 1 : info.dli_fname;
    return strncmp(name, "libmpi", 6) == 0
        || strncmp(name, "libopen-", 8) == 0
        || strncmp(name, "mca_", 4) == 0;
}

// Counts one allocation asked for by code at `caller`.
static inline void note(void *caller) {
    if (counting && !in_mpi_library(caller)) counted += 1;
}

#define NOTE() note(__builtin_return_address(0))

void *malloc(size_t size) {
    NOTE();
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    NOTE();
    return __libc_calloc(count, size);
}

void *realloc(void *block, size_t size) {
    NOTE();
    return __libc_realloc(block, size);
}

void *reallocarray(void *block, size_t count, size_t size) {
    NOTE();
    if (size != 0 && count > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_realloc(block, count * size);
}

void *memalign(size_t alignment, size_t size) {
    NOTE();
    return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) {
    NOTE();
    return __libc_memalign(alignment, size);
}

void *valloc(size_t size) {
    NOTE();
    return __libc_memalign((size_t)sysconf(_SC_PAGESIZE), size);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    NOTE();
    // The alignment must be a power of two and a multiple of a pointer's
    // size, as POSIX requires; memalign itself does not check.
    if (alignment % sizeof(void *) != 0
        || (alignment & (alignment - 1)) != 0) {
        return EINVAL;
    }
    void *block = __libc_memalign(alignment, size);
    if (block == NULL) return ENOMEM;
    *out = block;
    return 0;
}

#endif
