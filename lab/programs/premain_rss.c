/* Preloaded by `lab fidelity` into every real run. Before main it appends "<pid> pre <RSS
 * bytes>\n" to the file named by ALLOCLAB_PREMAIN_RSS, and at exit "<pid> hwm <VmHWM bytes>\n":
 * heap RSS = peak - pre. (wait4's ru_maxrss cannot be used for the peak: Linux carries the
 * forking parent's RSS high-water mark over into it.) Uses only system calls and the stack: it
 * must not allocate (malloc is the allocator under test, and this may run before it is ready). */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

static int put_u(char *buf, unsigned long v) {
    char t[24];
    int n = 0, i = 0;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) buf[i++] = t[--n];
    return i;
}

static void put_line(const char *tag, unsigned long bytes) {
    const char *path = getenv("ALLOCLAB_PREMAIN_RSS");
    if (!path || !*path) return;
    char line[80];
    int k = put_u(line, (unsigned long)getpid());
    line[k++] = ' ';
    while (*tag) line[k++] = *tag++;
    line[k++] = ' ';
    k += put_u(line + k, bytes);
    line[k++] = '\n';
    int out = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (out < 0) return;
    ssize_t w = write(out, line, (size_t)k);
    (void)w;
    close(out);
}

/* VmHWM from /proc/self/status, in bytes (0 if not found). */
static unsigned long hwm(void) {
    char b[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    if (n <= 0) return 0;
    b[n] = 0;
    for (const char *p = b; *p; p++) {
        if ((p == b || p[-1] == '\n') && p[0] == 'V' && p[1] == 'm' && p[2] == 'H' && p[3] == 'W' &&
            p[4] == 'M' && p[5] == ':') {
            p += 6;
            while (*p == ' ' || *p == '\t') p++;
            unsigned long kb = 0;
            while (*p >= '0' && *p <= '9') kb = kb * 10 + (unsigned long)(*p++ - '0');
            return kb * 1024;
        }
    }
    return 0;
}

__attribute__((destructor)) static void exit_hwm(void) {
    unsigned long h = hwm();
    if (h) put_line("hwm", h);
}

__attribute__((constructor)) static void premain_rss(void) {
    const char *path = getenv("ALLOCLAB_PREMAIN_RSS");
    if (!path || !*path) return;
    char b[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    if (n <= 0) return;
    b[n] = 0;
    /* statm: size resident shared ... (pages) */
    const char *p = b;
    while (*p && *p != ' ') p++;
    unsigned long pages = 0;
    if (*p) p++;
    while (*p >= '0' && *p <= '9') pages = pages * 10 + (unsigned long)(*p++ - '0');
    put_line("pre", pages * (unsigned long)sysconf(_SC_PAGESIZE));
}
