/* Hostile conditions for the recorder's tests (tests/hostile.rs). Usage: hostile MODE [N]
 *   pthread-exit      a worker allocates for 200 ms; the main thread calls pthread_exit at once.
 *                     Without the recorder the process exits 0 when the worker ends.
 *   pthread-exit-alone  the main thread allocates N blocks and calls pthread_exit (no other
 *                     thread of the program).
 *   _Fork N | sysfork N | clone N
 *                     the child is made with glibc's _Fork() (no atfork handlers), a raw
 *                     syscall(SYS_fork), or clone() without CLONE_VM; it mallocs and frees N
 *                     blocks and exit(0)s; the parent waits, allocates 5 blocks and prints
 *                     "child <pid> <status>".
 *   exec-thread       a thread execv()s /bin/true while the main thread allocates.
 *   fork-churn N      N rounds: start 4 threads that allocate and exit at once, fork while they
 *                     exit; the child allocates and exit(0)s; the parent waits for all.
 *   oom MB            lowers RLIMIT_AS to the current address space + MB MiB (0: keeps the
 *                     limit it was given, e.g. by `ulimit -v`), then mallocs
 *                     64 B blocks until malloc returns NULL (at most 4 M), then 4 KiB blocks
 *                     until NULL, frees everything and prints "oom <big> <small>".
 *   signals N         another thread sends SIGUSR1 to the main thread N times, each after the
 *                     previous handler ran; the handler mallocs 40 B and frees it; the main
 *                     thread free(NULL)s all along (never holding a malloc lock, so the handler's
 *                     malloc is safe). Prints "signals <N>".
 * Uses write(2), not stdio, where the counts must be exact. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

pid_t _Fork(void);

static void say(const char *s) { write(1, s, strlen(s)); }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void churn(long n) {
    for (long i = 0; i < n; i++) {
        void *p = malloc(16 + (i & 255));
        free(p);
    }
}

static void *worker(void *arg) {
    (void)arg;
    double t0 = now();
    while (now() - t0 < 0.2) churn(1000);
    return NULL;
}

static long child_n;
static int child_main(void *arg) {
    (void)arg;
    churn(child_n);
    exit(0);
}

static void *short_thread(void *arg) {
    churn(50);
    return arg;
}

static void *exec_thread(void *arg) {
    (void)arg;
    usleep(20000);
    char *args[] = {"/bin/true", NULL};
    execv("/bin/true", args);
    _exit(127);
}

static volatile sig_atomic_t handled;
static void on_usr1(int sig) {
    (void)sig;
    void *p = malloc(40);
    free(p);
    handled = handled + 1;
}
static pthread_t main_thread;
static long signals_n;
static void *sender(void *arg) {
    (void)arg;
    for (long i = 0; i < signals_n; i++) {
        pthread_kill(main_thread, SIGUSR1);
        while (handled <= i) sched_yield();
    }
    return NULL;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    long n = argc > 2 ? atol(argv[2]) : 0;
    char buf[128];
    if (!strcmp(mode, "pthread-exit")) {
        pthread_t t;
        pthread_create(&t, NULL, worker, NULL);
        churn(1000);
        pthread_exit(NULL);
    }
    if (!strcmp(mode, "pthread-exit-alone")) {
        churn(n);
        pthread_exit(NULL);
    }
    if (!strcmp(mode, "_Fork") || !strcmp(mode, "sysfork") || !strcmp(mode, "clone")) {
        churn(100);
        child_n = n;
        pid_t c;
        if (!strcmp(mode, "clone")) {
            static char stack[1 << 16];
            c = clone(child_main, stack + sizeof stack, SIGCHLD, NULL);
        } else {
            c = !strcmp(mode, "_Fork") ? _Fork() : (pid_t)syscall(SYS_fork);
            if (c == 0) child_main(NULL);
        }
        int st = -1;
        waitpid(c, &st, 0);
        churn(5);
        snprintf(buf, sizeof buf, "child %d %d\n", (int)c, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        say(buf);
        return 0;
    }
    if (!strcmp(mode, "exec-thread")) {
        pthread_t t;
        pthread_create(&t, NULL, exec_thread, NULL);
        for (;;) churn(1000);
    }
    if (!strcmp(mode, "fork-churn")) {
        for (long r = 0; r < n; r++) {
            pthread_t t[4];
            for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, short_thread, NULL);
            pid_t c = fork();
            if (c == 0) {
                churn(1000);
                exit(0);
            }
            for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
            int st;
            waitpid(c, &st, 0);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return 3;
        }
        say("fork-churn ok\n");
        return 0;
    }
    if (!strcmp(mode, "oom")) {
        long pages = 0, page = sysconf(_SC_PAGESIZE);
        FILE *f = fopen("/proc/self/statm", "r");
        if (!f || fscanf(f, "%ld", &pages) != 1) return 4;
        fclose(f);
        struct rlimit rl = {.rlim_cur = pages * page + (n << 20), .rlim_max = RLIM_INFINITY};
        if (n > 0 && setrlimit(RLIMIT_AS, &rl)) return 5;
        long cap = 1 << 22, nb = 0, ns = 0;
        void **big = malloc(sizeof(void *) * (cap / 64));
        void **small = malloc(sizeof(void *) * cap);
        if (!big || !small) return 6;
        while (ns < cap && (small[ns] = malloc(64))) ns++;
        while (nb < cap / 64 && (big[nb] = malloc(4096))) nb++;
        for (long i = 0; i < nb; i++) free(big[i]);
        for (long i = 0; i < ns; i++) free(small[i]);
        snprintf(buf, sizeof buf, "oom %ld %ld\n", nb, ns);
        say(buf);
        return 0;
    }
    if (!strcmp(mode, "signals")) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1;
        sigaction(SIGUSR1, &sa, NULL);
        main_thread = pthread_self();
        signals_n = n;
        pthread_t t;
        pthread_create(&t, NULL, sender, NULL);
        while (handled < n) free(NULL);
        pthread_join(t, NULL);
        snprintf(buf, sizeof buf, "signals %ld\n", n);
        say(buf);
        return 0;
    }
    say("unknown mode\n");
    return 2;
}
