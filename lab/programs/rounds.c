/* A multithreaded C program for `lab fidelity`: ROUNDS rounds; each round the main thread
 * starts THREADS workers and joins them. A worker allocates objects of mixed sizes, keeps some,
 * hands the others to a shared exchange (a mutex-protected stack), and frees objects that other
 * workers handed over, so most blocks are freed by a thread other than the one that allocated
 * them, and every round's threads are new threads.
 * Usage: rounds ROUNDS THREADS OBJECTS */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct obj { struct obj *next; size_t size; unsigned char data[]; };

static struct obj *exchange;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long objects;

static void *worker(void *arg) {
    unsigned long seed = (unsigned long)(size_t)arg * 2654435761u + 1;
    struct obj *kept = NULL;
    unsigned long sum = 0;
    for (long i = 0; i < objects; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t size = 16 + (seed >> 33) % ((i % 64 == 0) ? 16384 : 256);
        struct obj *o = malloc(sizeof *o + size);
        if (!o) abort();
        o->size = size;
        memset(o->data, (int)i, size);
        if (i % 3 == 0) { o->next = kept; kept = o; continue; }
        pthread_mutex_lock(&lock);
        o->next = exchange;
        exchange = o;
        struct obj *take = NULL;
        if (i % 2 == 0 && exchange->next) { take = exchange->next; exchange->next = take->next; }
        pthread_mutex_unlock(&lock);
        if (take) { sum += take->data[0]; free(take); }
    }
    while (kept) { struct obj *n = kept->next; sum += kept->size; free(kept); kept = n; }
    return (void *)sum;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 10;
    int threads = argc > 2 ? atoi(argv[2]) : 4;
    objects = argc > 3 ? atol(argv[3]) : 20000;
    unsigned long total = 0;
    pthread_t *t = calloc((size_t)threads, sizeof *t);
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < threads; i++)
            if (pthread_create(&t[i], NULL, worker, (void *)(size_t)(r * threads + i + 1))) abort();
        for (int i = 0; i < threads; i++) { void *v; pthread_join(t[i], &v); total += (unsigned long)v; }
        /* What is left in the exchange is freed by the main thread between rounds. */
        while (exchange) { struct obj *n = exchange->next; free(exchange); exchange = n; }
    }
    free(t);
    printf("%lu\n", total);
    return 0;
}
