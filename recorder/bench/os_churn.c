/* os_churn: N rounds of mmap(64 KiB) + madvise(MADV_DONTNEED) + munmap, pages never touched
 * (3N OS calls, no page faults: the calls themselves). The cost of the recorder's OS call hooks,
 * with `--os-calls` (each call recorded) and without (the hooks only forward).
 * Usage: os_churn [rounds]   (default 200000) */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200000;
    long failed = 0;
    for (long i = 0; i < n; i++) {
        void *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) { failed++; continue; }
        failed += madvise(p, 65536, MADV_DONTNEED) != 0;
        failed += munmap(p, 65536) != 0;
    }
    printf("%ld\n", failed);
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    fprintf(stderr, "os_churn: main thread cpu %.0f ms\n", t.tv_sec * 1e3 + t.tv_nsec / 1e6);
    return failed != 0;
}
