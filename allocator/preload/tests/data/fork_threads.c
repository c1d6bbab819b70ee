/* Process lifetime: threads allocate and free without pause (and are created and end all the
 * time) while the main thread forks; every child allocates, frees, starts a thread of its own,
 * and exits 0. The parent must see every child exit 0 and end itself. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int stop;

static void *churn(void *arg) {
    size_t seed = (size_t)arg;
    void *keep[256] = {0};
    while (!stop) {
        for (int i = 0; i < 256; i++) {
            seed = seed * 6364136223846793005u + 1;
            free(keep[i]);
            size_t n = (seed >> 40) % (seed & 1 ? 600 : 70000) + 1;
            keep[i] = malloc(n);
            memset(keep[i], (int)i, n < 64 ? n : 64);
        }
    }
    for (int i = 0; i < 256; i++) free(keep[i]);
    return NULL;
}

static void *short_lived(void *arg) {
    (void)arg;
    void *p = malloc(3000), *q = malloc(40);
    free(p);
    free(q);
    return NULL;
}

static void *spawner(void *arg) {
    (void)arg;
    while (!stop) {
        pthread_t t;
        if (pthread_create(&t, NULL, short_lived, NULL) == 0) pthread_join(t, NULL);
    }
    return NULL;
}

static void *child_thread(void *arg) {
    char *s = malloc(100);
    strcpy(s, arg);
    return s;
}

int main(void) {
    pthread_t t[3];
    pthread_create(&t[0], NULL, churn, (void *)1);
    pthread_create(&t[1], NULL, churn, (void *)2);
    pthread_create(&t[2], NULL, spawner, NULL);
    int bad = 0;
    for (int i = 0; i < 60; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            void *p[100];
            for (int j = 0; j < 100; j++) p[j] = malloc((size_t)j * 50 + 1);
            for (int j = 0; j < 100; j++) free(p[j]);
            pthread_t c;
            void *r = NULL;
            if (pthread_create(&c, NULL, child_thread, "child") != 0) _exit(4);
            pthread_join(c, &r);
            int ok = r && strcmp(r, "child") == 0;
            free(r);
            _exit(ok ? 0 : 5);
        }
        int st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) bad++;
    }
    stop = 1;
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    printf("children failed: %d\n", bad);
    return bad != 0;
}
