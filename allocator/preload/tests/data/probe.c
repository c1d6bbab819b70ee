/* Runs under LD_PRELOAD=libfancy_preload.so: checks the malloc family is fancy's and behaves. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <errno.h>

#define CHECK(c) do { if (!(c)) { printf("FAIL line %d: %s\n", __LINE__, #c); return 1; } } while (0)

static void *worker(void *arg) {
    void **slots = arg;
    for (int i = 0; i < 100000; i++) {
        size_t n = 1 + (size_t)(i * 7919) % 3000;
        char *p = malloc(n);
        memset(p, i & 0xff, n);
        int k = i % 64;
        /* Swap atomically: the old block is often another thread's. */
        free(__atomic_exchange_n(&slots[k], p, __ATOMIC_ACQ_REL));
    }
    return NULL;
}

int main(void) {
    /* The fancy C API is in the process: proof the preload is active. */
    int (*validate)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "fancy_validate_heap");
    CHECK(validate != NULL);
    /* fancy's class sizes show through malloc_usable_size. */
    void *p = malloc(100);
    CHECK(malloc_usable_size(p) == 112);
    free(p);
    char *z = calloc(1000, 10);
    for (int i = 0; i < 10000; i++) CHECK(z[i] == 0);
    z = realloc(z, 100000);
    CHECK(z != NULL);
    free(z);
    void *a = NULL;
    CHECK(posix_memalign(&a, 4096, 10000) == 0 && ((uintptr_t)a & 4095) == 0);
    free(a);
    CHECK(posix_memalign(&a, 3, 10) == EINVAL);
    a = aligned_alloc(64, 200);
    CHECK(((uintptr_t)a & 63) == 0);
    free(a);
    a = memalign(1 << 20, 10);
    CHECK(((uintptr_t)a & ((1 << 20) - 1)) == 0);
    free(a);
    a = valloc(10);
    CHECK(((uintptr_t)a & 4095) == 0);
    free(a);
    a = pvalloc(10);
    CHECK(((uintptr_t)a & 4095) == 0 && malloc_usable_size(a) >= 4096);
    free(a);
    volatile size_t huge_n = SIZE_MAX / 2;
    CHECK(reallocarray(NULL, huge_n, 4) == NULL && errno == ENOMEM);
    CHECK(malloc(huge_n * 2 - 10) == NULL && errno == ENOMEM);
    char *big = malloc(20 << 20);
    memset(big, 1, 20 << 20);
    free(big);
    struct mallinfo2 mi = mallinfo2();
    CHECK(mi.arena > 0);
    CHECK(malloc_trim(0) == 1);

    /* Threads with cross-thread frees, and strdup/asprintf going through our malloc. */
    void *slots[64] = {0};
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, slots);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 64; i++) free(slots[i]);
    char *s = strdup("hello"), *f = NULL;
    CHECK(asprintf(&f, "%s-%d", s, 42) > 0 && strcmp(f, "hello-42") == 0);
    free(s);
    free(f);

    /* fork: the child allocates and validates. */
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 10000; i++) free(malloc(i % 5000));
        _exit(validate() ? 0 : 9);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(validate());
    printf("probe ok\n");
    return 0;
}
