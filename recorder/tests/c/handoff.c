/* Cross-thread free then allocation of the same address, as tight as glibc allows, for the
 * recorder's clock tests (contract 3: a free's stamp precedes the stamp of a later allocation
 * that returns the same address).
 * The main thread mallocs small blocks and passes them through a lock-free queue to a taker
 * thread that frees them at once. The main thread never frees, so its tcache stays empty, and
 * once the taker's tcache bins are full its frees go back to the main arena's fastbins, from
 * which the main thread's next mallocs take them: the same addresses, a moment after another
 * thread freed them, both threads running at the same time.
 * Usage: handoff [blocks]   (default 200000); prints "handoff <blocks>". */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define QUEUE 256

static void *queue[QUEUE];
static atomic_long head, tail; /* head: next slot the maker fills; tail: next the taker frees */
static long blocks = 200000;

/* Spins a while, then yields (a loaded 2-core machine runs other threads too). */
static void pause_a_bit(int *spins) { if (++*spins % 1000 == 0) sched_yield(); }

static void *take(void *arg) {
    (void)arg;
    for (long i = 0; i < blocks; i++) {
        int spins = 0;
        while (atomic_load_explicit(&head, memory_order_acquire) == i) pause_a_bit(&spins);
        free(queue[i % QUEUE]);
        atomic_store_explicit(&tail, i + 1, memory_order_release);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) blocks = atol(argv[1]);
    pthread_t t;
    pthread_create(&t, NULL, take, NULL);
    for (long i = 0; i < blocks; i++) {
        int spins = 0;
        while (i - atomic_load_explicit(&tail, memory_order_acquire) >= QUEUE) pause_a_bit(&spins);
        queue[i % QUEUE] = malloc(16 + (i % 4) * 16);
        atomic_store_explicit(&head, i + 1, memory_order_release);
    }
    pthread_join(t, NULL);
    printf("handoff %ld\n", blocks);
    return 0;
}
