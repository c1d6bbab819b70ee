/* Allocator misuse through the C symbols, one case per run (argv[1]): the program prints the
 * pointer it is about to misuse on stderr ("misusing 0x…") and then misuses it. Under
 * libfancy_preload.so each case must abort with a line naming that pointer. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static void say(void *p) { fprintf(stderr, "misusing %p\n", p); }

static void *p_shared;
static void *free_twice(void *arg) {
    (void)arg;
    free(p_shared);
    say(p_shared);
    free(p_shared);
    return NULL;
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    if (!strcmp(c, "double")) {
        char *a = malloc(24);
        free(a);
        say(a);
        free(a);
        char *x = malloc(24), *y = malloc(24);
        printf("same pointer twice: %s\n", x == y ? "yes" : "no");
    } else if (!strcmp(c, "aba")) {
        char *a = malloc(40), *b = malloc(40);
        free(a);
        free(b);
        say(a);
        free(a);
    } else if (!strcmp(c, "interior-small")) {
        char *a = malloc(64);
        say(a + 16);
        free(a + 16);
    } else if (!strcmp(c, "interior-medium")) {
        char *a = malloc(5000);
        memset(a, 'x', 5000);
        say(a + 256);
        free(a + 256);
    } else if (!strcmp(c, "double-medium")) {
        char *a = malloc(70000);
        free(a);
        say(a);
        free(a);
    } else if (!strcmp(c, "cross-thread")) {
        p_shared = malloc(32);
        pthread_t t;
        pthread_create(&t, NULL, free_twice, NULL);
        pthread_join(t, NULL);
    } else if (!strcmp(c, "foreign")) {
        char *m = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        say(m + 64);
        free(m + 64);
    } else if (!strcmp(c, "wild")) {
        void *w = (void *)(uintptr_t)0x5a5a5a5a50;
        say(w);
        free(w);
    } else if (!strcmp(c, "realloc-freed")) {
        char *a = malloc(300);
        free(a);
        say(a);
        a = realloc(a, 600);
    } else {
        fprintf(stderr, "unknown case %s\n", c);
        return 2;
    }
    return 0;
}
