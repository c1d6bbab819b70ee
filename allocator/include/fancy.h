/* fancy — alloclab's allocator, C API.
 *
 * Link against libfancy_preload.so (the fancy-preload cdylib, which also replaces malloc & co
 * when preloaded) or against the `fancy` Rust library. All functions are thread-safe.
 * Memory from one fancy_* allocation function is freed with fancy_free (or fancy_realloc),
 * from any thread.
 */
#ifndef FANCY_H
#define FANCY_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* malloc: `size` bytes aligned to 16; NULL and errno = ENOMEM when out of memory.
 * fancy_malloc(0) returns a unique pointer. */
void *fancy_malloc(size_t size);

/* free: NULL is ignored; a pointer not from fancy aborts with a message. */
void fancy_free(void *p);

/* calloc: n * size zeroed bytes; NULL (ENOMEM) on overflow. */
void *fancy_calloc(size_t n, size_t size);

/* realloc: glibc semantics — realloc(NULL, n) = malloc(n); realloc(p, 0) frees p and returns
 * NULL. Grows in place into a free neighbour when it can. */
void *fancy_realloc(void *p, size_t size);

/* aligned_alloc: any power-of-two alignment (else NULL, EINVAL). */
void *fancy_aligned_alloc(size_t align, size_t size);

/* posix_memalign: 0, EINVAL (align not a power of two multiple of sizeof(void*)) or ENOMEM. */
int fancy_posix_memalign(void **out, size_t align, size_t size);

/* Usable bytes of a block (>= the size asked for); 0 for NULL or a foreign pointer. */
size_t fancy_usable_size(const void *p);

/* Prints the allocator's statistics to stderr (no allocation). */
void fancy_print_stats(void);

/* Walks the heaps it can check without racing running threads (the caller's own, and those of
 * exited threads) and checks every invariant; false (and a message on stderr) if one fails. */
bool fancy_validate_heap(void);

/* Reports blocks still allocated to stderr; true if there are any. */
bool fancy_check_leaks(void);

#ifdef __cplusplus
}
#endif

#endif /* FANCY_H */
