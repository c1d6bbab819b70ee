/* Memory exhaustion under RLIMIT_AS (what `ulimit -v` sets): a program that handles malloc
 * returning NULL. It limits its address space to what it uses now plus argv[1] MiB, then in
 * rounds fills it with blocks of one kind (huge, medium, small, mixed) until malloc fails, frees
 * everything, and goes on. Every NULL must come with errno ENOMEM, nothing may crash, and after
 * each round the freed memory must serve the next kind: prints, per round, the MiB it got. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static size_t vm_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %zu kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

#define MAXB (1 << 20)
static void *blocks[MAXB];

static size_t fill(const char *kind, size_t lo, size_t hi) {
    size_t n = 0, bytes = 0, seed = 12345;
    while (n < MAXB) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        size_t size = lo + (seed >> 33) % (hi - lo + 1);
        errno = 0;
        void *p = malloc(size);
        if (!p) {
            if (errno != ENOMEM) { printf("%s: NULL without ENOMEM\n", kind); exit(2); }
            break;
        }
        memset(p, 0x77, size < 4096 ? size : 4096);
        blocks[n++] = p;
        bytes += size;
    }
    for (size_t i = 0; i < n; i++) free(blocks[i]);
    return bytes >> 20;
}

int main(int argc, char **argv) {
    size_t extra_mib = argc > 1 ? strtoul(argv[1], 0, 10) : 256;
    void *warm = malloc(100); /* the allocator's own start-up before the limit */
    free(warm);
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = (vm_kib() << 10) + (extra_mib << 20);
    if (setrlimit(RLIMIT_AS, &rl) != 0) { perror("setrlimit"); return 3; }
    for (int round = 0; round < 2; round++) {
        printf("huge %zu\n", fill("huge", 2 << 20, 6 << 20));
        printf("medium %zu\n", fill("medium", 600, 200000));
        printf("small %zu\n", fill("small", 1, 512));
        printf("mixed %zu\n", fill("mixed", 1, 300000));
    }
    errno = 0;
    void *p = calloc(1 << 20, 1 << 20);
    printf("calloc(1 TiB) %s\n", p ? "ptr" : errno == ENOMEM ? "NULL ENOMEM" : "NULL other");
    free(p);
    void *q = malloc(64);
    printf("after %s\n", q ? "ok" : "NULL");
    free(q);
    return 0;
}
