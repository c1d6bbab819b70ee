/* Impossible requests through every entry point of the malloc family: each must fail with NULL
 * and errno ENOMEM (posix_memalign returns the error; EINVAL for a bad alignment), as glibc's
 * do. Prints one line per request: its name and what came back ("NULL ENOMEM", "ret ENOMEM",
 * or "ptr" when it succeeded), so the test compares the lines with glibc's and checks them. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *err(int e) {
    return e == ENOMEM ? "ENOMEM" : e == EINVAL ? "EINVAL" : e == 0 ? "0" : "other";
}

static void show(const char *what, void *p) {
    int e = errno;
    if (p) {
        printf("%s ptr\n", what);
        free(p);
    } else {
        printf("%s NULL %s\n", what, err(e));
    }
}

#define TRY(expr) do { errno = 0; void *p_ = (expr); show(#expr, p_); } while (0)

int main(void) {
    const size_t TiB = (size_t)1 << 40;
    void *live = malloc(100); /* realloc of a real block must leave it alone when it fails */
    memset(live, 0x5a, 100);
    TRY(malloc(64 * TiB));
    TRY(malloc(SIZE_MAX));
    TRY(malloc(SIZE_MAX - 4096));
    TRY(malloc(PTRDIFF_MAX));
    TRY(malloc((size_t)PTRDIFF_MAX + 1));
    TRY(calloc(64 * TiB, 1));
    TRY(calloc(SIZE_MAX / 2 + 2, 2));
    TRY(calloc((size_t)1 << 33, (size_t)1 << 31));
    TRY(calloc(3, SIZE_MAX / 3 + 1));
    TRY(realloc(NULL, 64 * TiB));
    TRY(realloc(NULL, SIZE_MAX));
    TRY(reallocarray(NULL, SIZE_MAX / 2 + 2, 2));
    TRY(reallocarray(NULL, (size_t)1 << 20, (size_t)1 << 26));
    TRY(aligned_alloc(TiB, 16));
    TRY(aligned_alloc(64, SIZE_MAX));
    TRY(aligned_alloc(4096, 64 * TiB));
    TRY(memalign(TiB, 16));
    TRY(memalign(64, PTRDIFF_MAX));
    TRY(valloc(SIZE_MAX));
    TRY(valloc(64 * TiB));
    TRY(pvalloc(SIZE_MAX));
    TRY(pvalloc(64 * TiB));
    {
        void *q = (void *)1;
        int r = posix_memalign(&q, TiB, 16);
        if (r == 0) free(q);
        printf("posix_memalign(1 TiB, 16) ret %s%s\n", err(r), q == (void *)1 ? "" : " out-written");
        q = (void *)1;
        r = posix_memalign(&q, 64, SIZE_MAX);
        printf("posix_memalign(64, SIZE_MAX) ret %s%s\n", err(r), q == (void *)1 ? "" : " out-written");
        q = (void *)1;
        r = posix_memalign(&q, 64, 64 * TiB);
        printf("posix_memalign(64, 64 TiB) ret %s%s\n", err(r), q == (void *)1 ? "" : " out-written");
    }
    /* realloc of a live block to an impossible size: NULL, ENOMEM, the block untouched. */
    size_t sizes[] = {64 * TiB, SIZE_MAX, SIZE_MAX - 4096, PTRDIFF_MAX};
    for (int i = 0; i < 4; i++) {
        errno = 0;
        void *q = realloc(live, sizes[i]);
        int e = errno;
        int intact = 1;
        for (int j = 0; j < 100; j++) intact &= ((unsigned char *)live)[j] == 0x5a;
        printf("realloc(live, size %d) %s %s%s\n", i, q ? "ptr" : "NULL", err(e), intact ? "" : " CLOBBERED");
        if (q) live = q;
        errno = 0;
        q = reallocarray(live, sizes[i], 1);
        e = errno;
        printf("reallocarray(live, size %d, 1) %s %s\n", i, q ? "ptr" : "NULL", err(e));
        if (q) live = q;
    }
    /* A huge block grown to an impossible size (mremap) fails the same way. */
    void *big = malloc(3 << 20);
    errno = 0;
    void *q = realloc(big, 64 * TiB);
    printf("realloc(huge, 64 TiB) %s %s\n", q ? "ptr" : "NULL", err(errno));
    free(q ? q : big);
    free(live);
    /* And the allocator still works. */
    void *ok = malloc(1000);
    printf("after: %s\n", ok ? "ok" : "broken");
    free(ok);
    return 0;
}
