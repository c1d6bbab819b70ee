/* A multithreaded C program for `lab fidelity`: ROUNDS rounds of a three-stage pipeline whose
 * threads are started anew each round. Producers allocate messages (a header and a payload of
 * varying size), a transformer reallocates each payload larger and passes it on, a consumer
 * checks and frees it: every message is allocated, grown and freed on three different threads.
 * Bounded queues (mutex + condition variables) connect the stages.
 * Usage: pipeline ROUNDS MESSAGES */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAP 256
struct msg { size_t len; char *payload; };
struct queue {
    struct msg *items[CAP];
    int head, tail, count, closed;
    pthread_mutex_t m;
    pthread_cond_t not_empty, not_full;
};

static void q_init(struct queue *q) {
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->m, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
}
static void q_push(struct queue *q, struct msg *x) {
    pthread_mutex_lock(&q->m);
    while (q->count == CAP) pthread_cond_wait(&q->not_full, &q->m);
    q->items[q->tail] = x; q->tail = (q->tail + 1) % CAP; q->count++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->m);
}
static struct msg *q_pop(struct queue *q) {
    pthread_mutex_lock(&q->m);
    while (q->count == 0 && !q->closed) pthread_cond_wait(&q->not_empty, &q->m);
    struct msg *x = NULL;
    if (q->count) { x = q->items[q->head]; q->head = (q->head + 1) % CAP; q->count--; }
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->m);
    return x;
}
static void q_close(struct queue *q) {
    pthread_mutex_lock(&q->m);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->m);
}

static struct queue a, b;
static long messages;
static unsigned long checksum;

static void *produce(void *arg) {
    unsigned long seed = (unsigned long)(size_t)arg;
    for (long i = 0; i < messages; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        struct msg *x = malloc(sizeof *x);
        x->len = 8 + (seed >> 35) % 1000;
        x->payload = malloc(x->len);
        memset(x->payload, 'a' + (int)(i % 26), x->len);
        q_push(&a, x);
    }
    q_close(&a);
    return NULL;
}
static void *transform(void *arg) {
    (void)arg;
    struct msg *x;
    while ((x = q_pop(&a))) {
        size_t n = x->len * 2;
        char *p = realloc(x->payload, n);
        memcpy(p + x->len, p, x->len);
        x->payload = p; x->len = n;
        q_push(&b, x);
    }
    q_close(&b);
    return NULL;
}
static void *consume(void *arg) {
    (void)arg;
    struct msg *x;
    unsigned long sum = 0;
    while ((x = q_pop(&b))) { sum += (unsigned char)x->payload[x->len - 1]; free(x->payload); free(x); }
    return (void *)sum;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 10;
    messages = argc > 2 ? atol(argv[2]) : 20000;
    for (int r = 0; r < rounds; r++) {
        q_init(&a); q_init(&b);
        pthread_t p, t, c;
        void *v;
        pthread_create(&p, NULL, produce, (void *)(size_t)(r + 1));
        pthread_create(&t, NULL, transform, NULL);
        pthread_create(&c, NULL, consume, NULL);
        pthread_join(p, NULL); pthread_join(t, NULL); pthread_join(c, &v);
        checksum += (unsigned long)v;
    }
    printf("%lu\n", checksum);
    return 0;
}
