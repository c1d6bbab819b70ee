/* churn: 10M free-then-malloc of 8 B - 32 KiB over 4096 slots (20M malloc-family events, one
 * thread). The recorder benchmark's worst case: nothing but allocator calls.
 * Usage: churn [iterations]   (default 10000000) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define SLOTS 4096

static uint64_t state = 0x9E3779B97F4A7C15ull;
static inline uint64_t next(void) { /* xorshift64* */
    state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
    return state * 2685821657736338717ull;
}

/* 8 B - 32 KiB, small sizes far more frequent (a power-of-two class, then uniform in it). */
static inline size_t size(void) {
    uint64_t r = next();
    unsigned cls = (unsigned)(r % 13);              /* 8 << 0 .. 8 << 12 = 32 KiB */
    cls = (unsigned)((cls * cls) / 13);             /* skew towards small classes */
    size_t lo = (size_t)8 << cls;
    return lo + (size_t)((r >> 8) % lo) / 2 + 1 > 32768 ? 32768 : lo + (size_t)((r >> 8) % lo) / 2;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 10000000;
    void *slot[SLOTS];
    for (int i = 0; i < SLOTS; i++) slot[i] = malloc(size());
    for (long i = 0; i < n; i++) {
        unsigned j = (unsigned)(next() % SLOTS);
        free(slot[j]);
        slot[j] = malloc(size());
        *(volatile char *)slot[j] = 1;
    }
    unsigned long sum = 0;
    for (int i = 0; i < SLOTS; i++) { sum += (uintptr_t)slot[i] & 0xff; free(slot[i]); }
    printf("%lu\n", sum & 1);
    /* The main thread's own CPU time: the recorder's cost on the program's thread, apart from
     * its writer thread's. */
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    fprintf(stderr, "churn: main thread cpu %.0f ms\n", t.tv_sec * 1e3 + t.tv_nsec / 1e6);
    return 0;
}
