/* N live threads (argv[1]): each allocates a small working set (64 blocks of 16..512 B and 4 of
 * 1..4 KiB), then all wait on a barrier while the main thread reads the process's RSS; then
 * they free and end. Prints "rss_kib <VmRSS while all live> secs <wall from start to joined>". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_barrier_t all_live, measured;

static void *work(void *arg) {
    size_t seed = (size_t)arg * 2654435761u + 1;
    void *small[64], *medium[4];
    for (int i = 0; i < 64; i++) {
        seed = seed * 6364136223846793005u + 1;
        size_t n = 16 + (seed >> 40) % 497;
        small[i] = malloc(n);
        memset(small[i], i, n);
    }
    for (int i = 0; i < 4; i++) {
        medium[i] = malloc(1024 + (size_t)i * 1000);
        memset(medium[i], i, 1024);
    }
    pthread_barrier_wait(&all_live);
    pthread_barrier_wait(&measured);
    for (int i = 0; i < 64; i++) free(small[i]);
    for (int i = 0; i < 4; i++) free(medium[i]);
    return NULL;
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_barrier_init(&all_live, NULL, (unsigned)n + 1);
    pthread_barrier_init(&measured, NULL, (unsigned)n + 1);
    pthread_t *t = malloc(sizeof(pthread_t) * (size_t)n);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i], &attr, work, (void *)(size_t)i) != 0) {
            printf("pthread_create failed at %d\n", i);
            return 1;
        }
    pthread_barrier_wait(&all_live);
    long rss = rss_kib();
    pthread_barrier_wait(&measured);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("rss_kib %ld secs %.4f\n", rss, (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    free(t);
    return 0;
}
