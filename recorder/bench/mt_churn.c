/* mt_churn: THREADS threads, each doing N free-then-malloc of 8 B - 32 KiB over its own 4096
 * slots (churn.c's loop, per thread: 2 N + 8192 malloc-family events each). The recorder
 * benchmark's multi-threaded case: every stamp is then an ordered one (see recorder/README.md,
 * Clock). Prints to stderr the sum of the worker threads' CPU times, which is the program
 * threads' side of the recorder's cost (its writer thread is apart).
 * Usage: mt_churn THREADS [N]   (N default 2000000) */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define SLOTS 4096

static long iterations;

static inline uint64_t next(uint64_t *s) { /* xorshift64* */
    *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* As churn.c: 8 B - 32 KiB, small sizes far more frequent. */
static inline size_t size(uint64_t *s) {
    uint64_t r = next(s);
    unsigned cls = (unsigned)(r % 13);
    cls = (unsigned)((cls * cls) / 13);
    size_t lo = (size_t)8 << cls;
    return lo + (size_t)((r >> 8) % lo) / 2 + 1 > 32768 ? 32768 : lo + (size_t)((r >> 8) % lo) / 2;
}

static void *worker(void *arg) {
    uint64_t s = 0x9E3779B97F4A7C15ull + (uintptr_t)arg * 0x632BE59BD9B4E019ull;
    void **slot = malloc(SLOTS * sizeof *slot);
    for (int i = 0; i < SLOTS; i++) slot[i] = malloc(size(&s));
    for (long i = 0; i < iterations; i++) {
        unsigned j = (unsigned)(next(&s) % SLOTS);
        free(slot[j]);
        slot[j] = malloc(size(&s));
        *(volatile char *)slot[j] = 1;
    }
    for (int i = 0; i < SLOTS; i++) free(slot[i]);
    free(slot);
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    double *ms = malloc(sizeof *ms);
    *ms = t.tv_sec * 1e3 + t.tv_nsec / 1e6;
    return ms;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    iterations = argc > 2 ? atol(argv[2]) : 2000000;
    if (threads < 1 || threads > 64) {
        fprintf(stderr, "mt_churn: THREADS must be 1-64\n");
        return 2;
    }
    pthread_t t[64];
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
    double sum = 0;
    for (int i = 0; i < threads; i++) {
        void *ms;
        pthread_join(t[i], &ms);
        sum += *(double *)ms;
        free(ms);
    }
    fprintf(stderr, "mt_churn: worker threads cpu %.0f ms\n", sum);
    return 0;
}
