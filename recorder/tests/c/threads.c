/* A multithreaded program with known allocation counts, for the recorder's tests.
 * Each worker makes a fixed set of malloc-family calls (counted here, per kind), frees half of
 * its mallocs itself and half of its neighbour's (cross-thread frees), runs realloc chains,
 * every aligned function, and allocations that must fail. Output, one line per worker:
 *   tid <os tid> malloc <n> calloc <n> realloc <n> free <n> posix_memalign <n> aligned_alloc <n>
 *       memalign <n> valloc <n> pvalloc <n> failed <n>
 * Usage: threads [workers] [allocations per worker] */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { MALLOC, CALLOC, REALLOC, FREE, POSIX_MEMALIGN, ALIGNED_ALLOC, MEMALIGN, VALLOC, PVALLOC, FAILED, KINDS };
static const char *names[KINDS] = {"malloc", "calloc", "realloc", "free", "posix_memalign",
                                   "aligned_alloc", "memalign", "valloc", "pvalloc", "failed"};

static int workers = 4, per = 2000;
static pthread_barrier_t barrier;
static void **handoff[64];  /* handoff[i]: worker i's second half, freed by worker i+1 */

struct worker { int id; long tid; long n[KINDS]; };

static void *work(void *arg) {
    struct worker *w = arg;
    long *n = w->n;
    w->tid = syscall(SYS_gettid);
    void **mine = malloc(per * sizeof(void *)); n[MALLOC]++;
    for (int j = 0; j < per; j++) { mine[j] = malloc(16 + (j * 37) % 512); n[MALLOC]++; }
    void **zeroed = calloc(per / 2, sizeof(void *)); n[CALLOC]++;
    for (int j = 0; j < per / 2; j++) { zeroed[j] = calloc(j % 7 + 1, 24); n[CALLOC]++; }
    /* Realloc chains: 50 chains of 10 growing steps. */
    for (int c = 0; c < 50; c++) {
        void *p = NULL;
        for (int k = 0; k < 10; k++) { p = realloc(p, 32 * (k + 1) + c); n[REALLOC]++; }
        free(p); n[FREE]++;
    }
    /* reallocarray (a realloc in the trace), growing then one overflow. */
    void *arr = reallocarray(NULL, 10, 8); n[REALLOC]++;
    arr = reallocarray(arr, 1000, 8); n[REALLOC]++;
    if (reallocarray(arr, SIZE_MAX / 4, 8) == NULL) { n[REALLOC]++; n[FAILED]++; }
    free(arr); n[FREE]++;
    /* Every aligned function, five times each. */
    for (int k = 0; k < 5; k++) {
        void *p;
        if (posix_memalign(&p, 64 << k, 100 + k) == 0) { n[POSIX_MEMALIGN]++; free(p); n[FREE]++; }
        p = aligned_alloc(128, 256 * (k + 1)); n[ALIGNED_ALLOC]++; free(p); n[FREE]++;
        p = memalign(32 << k, 40); n[MEMALIGN]++; free(p); n[FREE]++;
        p = valloc(5000 + k); n[VALLOC]++; free(p); n[FREE]++;
        p = pvalloc(10 + k); n[PVALLOC]++; free(p); n[FREE]++;
    }
    /* Allocations that must fail (each recorded with a NULL result). */
    if (malloc(SIZE_MAX / 2) == NULL) { n[MALLOC]++; n[FAILED]++; }
    if (calloc(SIZE_MAX / 2, 4) == NULL) { n[CALLOC]++; n[FAILED]++; }
    { void *p; if (posix_memalign(&p, 64, SIZE_MAX / 2) == ENOMEM) { n[POSIX_MEMALIGN]++; n[FAILED]++; } }
    { void *p; if (posix_memalign(&p, 3, 16) == EINVAL) { n[POSIX_MEMALIGN]++; n[FAILED]++; } }
    {
        void *keep = malloc(64); n[MALLOC]++;
        if (realloc(keep, SIZE_MAX / 2) == NULL) { n[REALLOC]++; n[FAILED]++; }
        free(keep); n[FREE]++;
    }
    free(NULL); n[FREE]++;
    /* Half of my mallocs I free; the other half my neighbour frees. */
    for (int j = 0; j < per / 2; j++) { free(mine[j]); n[FREE]++; }
    handoff[w->id] = mine + per / 2;
    pthread_barrier_wait(&barrier);
    void **theirs = handoff[(w->id + workers - 1) % workers];
    for (int j = 0; j < per - per / 2; j++) { free(theirs[j]); n[FREE]++; }
    pthread_barrier_wait(&barrier);
    free(mine); n[FREE]++;  /* after the neighbour is done with it */
    for (int j = 0; j < per / 2; j++) { free(zeroed[j]); n[FREE]++; }
    free(zeroed); n[FREE]++;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) workers = atoi(argv[1]);
    if (argc > 2) per = atoi(argv[2]);
    if (workers < 1 || workers > 64 || per < 2) return 2;
    pthread_barrier_init(&barrier, NULL, workers);
    struct worker w[64] = {0};
    pthread_t t[64];
    for (int i = 0; i < workers; i++) { w[i].id = i; pthread_create(&t[i], NULL, work, &w[i]); }
    for (int i = 0; i < workers; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < workers; i++) {
        printf("tid %ld", w[i].tid);
        for (int k = 0; k < KINDS; k++) printf(" %s %ld", names[k], w[i].n[k]);
        printf("\n");
    }
    return 0;
}
