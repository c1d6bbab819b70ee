/* The main thread allocates, starts a worker that allocates and frees, and ends with
 * pthread_exit: the process must end when the worker does (exit status 0), whatever threads
 * the allocator runs (FANCY_RECLAIM=1 starts its reclaimer). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *work(void *arg) {
    (void)arg;
    for (int r = 0; r < 200; r++) {
        void *p[64];
        for (int i = 0; i < 64; i++) p[i] = malloc(16 + (size_t)i * 97);
        for (int i = 0; i < 64; i++) free(p[i]);
    }
    usleep(100 * 1000);
    char *last = malloc(5000);
    strcpy(last, "worker done\n");
    if (write(1, last, strlen(last)) < 0) abort();
    free(last);
    return NULL;
}

int main(void) {
    char *big = malloc(8 << 20); /* a huge block and some arenas: the reclaimer has work */
    memset(big, 1, 8 << 20);
    free(big);
    pthread_t t;
    if (pthread_create(&t, NULL, work, NULL) != 0) return 3;
    pthread_detach(t);
    pthread_exit(NULL);
}
