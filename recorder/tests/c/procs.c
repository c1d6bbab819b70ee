/* Process-level scenarios for the recorder's tests. Usage: procs MODE
 *   fork       10 mallocs; fork; the child mallocs and frees 5 blocks, frees one of the
 *              parent's, and exit(0)s; the parent waits and prints "child <pid>".
 *   fork-exit  the same, but the child leaves with _exit(0).
 *   exec       fork; the child execv()s this program as `procs exec-child` (no allocation
 *              before the exec); the parent waits and prints "child <pid>".
 *   exec-child 7 mallocs and 7 frees, then exit(0).
 *   spin       malloc/free pairs forever, writing "<pairs>\n" to stdout every 100000 pairs.
 *   execfail   3 mallocs of 3000 B, an execv() that fails, 4 mallocs of 4000 B, exit(0).
 *   closefds F like a daemon: closes every descriptor from 3 up, opens F and dup2()s it onto
 *              every number up to 1023 (the recorder's included), allocates for 300 ms, writes
 *              "mine\n" to F and exits: F must hold exactly that.
 * Uses write(2), not stdio, where the counts must be exact. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void say(const char *s) { write(1, s, strlen(s)); }

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "fork") || !strcmp(mode, "fork-exit")) {
        void *p[10];
        for (int i = 0; i < 10; i++) p[i] = malloc(100 + i);
        pid_t c = fork();
        if (c == 0) {
            void *q[5];
            for (int i = 0; i < 5; i++) q[i] = malloc(1000 + i);
            for (int i = 0; i < 5; i++) free(q[i]);
            free(p[0]);
            if (!strcmp(mode, "fork-exit")) _exit(0);
            exit(0);
        }
        int st;
        waitpid(c, &st, 0);
        for (int i = 0; i < 10; i++) free(p[i]);
        char buf[64];
        snprintf(buf, sizeof buf, "child %d\n", (int)c);
        say(buf);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    }
    if (!strcmp(mode, "exec")) {
        pid_t c = fork();
        if (c == 0) {
            char *args[] = {argv[0], "exec-child", NULL};
            execv(argv[0], args);
            _exit(127);
        }
        int st;
        waitpid(c, &st, 0);
        char buf[64];
        snprintf(buf, sizeof buf, "child %d\n", (int)c);
        say(buf);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    }
    if (!strcmp(mode, "exec-child")) {
        void *q[7];
        for (int i = 0; i < 7; i++) q[i] = malloc(7000 + i);
        for (int i = 0; i < 7; i++) free(q[i]);
        exit(0);
    }
    if (!strcmp(mode, "spin")) {
        char buf[32];
        for (unsigned long n = 1;; n++) {
            free(malloc(n % 1000 + 1));
            if (n % 100000 == 0) {
                int len = snprintf(buf, sizeof buf, "%lu\n", n);
                write(1, buf, len);
            }
        }
    }
    if (!strcmp(mode, "execfail")) {
        for (int i = 0; i < 3; i++) malloc(3000 + i);
        char *args[] = {"/nonexistent/program", NULL};
        if (execv(args[0], args) == 0) return 1;
        for (int i = 0; i < 4; i++) malloc(4000 + i);
        exit(0);
    }
    if (!strcmp(mode, "closefds") && argc > 2) {
        for (int fd = 3; fd < 4096; fd++) close(fd);
        int f = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (f < 0) return 3;
        for (int fd = 3; fd < 1024; fd++)
            if (fd != f) dup2(f, fd);
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        do {
            for (int i = 0; i < 10000; i++) free(malloc(i % 500 + 1));
            clock_gettime(CLOCK_MONOTONIC, &t);
        } while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 300);
        write(f, "mine\n", 5);
        exit(0);
    }
    say("usage: procs fork|fork-exit|exec|exec-child|spin|execfail|closefds FILE\n");
    return 2;
}
