/* Preloaded by `lab fidelity` into every real run: before main, writes "<pid> <RSS bytes>\n"
 * to the file named by ALLOCLAB_PREMAIN_RSS, so that heap RSS = peak RSS - this baseline.
 * Uses only system calls and the stack: it must not allocate (malloc is the allocator under
 * test, and this may run before it is ready). */
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
    char line[64];
    int k = put_u(line, (unsigned long)getpid());
    line[k++] = ' ';
    k += put_u(line + k, pages * (unsigned long)sysconf(_SC_PAGESIZE));
    line[k++] = '\n';
    int out = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (out < 0) return;
    ssize_t w = write(out, line, (size_t)k);
    (void)w;
    close(out);
}
