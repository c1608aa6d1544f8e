/* Ground truth for unwinding through a library without frame pointers (build: gcc -O2 -g):
 * the hot function, compare(), is a callback that libc's qsort calls; the only function of
 * this program that calls qsort is sort_batch(). An unwinder that gets through libc's frames
 * shows sort_batch (and main) above every compare sample.
 * Usage: unwind_qsort SECONDS; prints "ready", waits for a line on stdin, prints sorts=N. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define N 4096

static volatile unsigned long sink;

__attribute__((noipa)) int compare(const void *a, const void *b) {
    /* A little work per comparison so that the samples land here, not in qsort itself. */
    for (int i = 0; i < 40; i++)
        sink += i;
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Returns the smallest element so that the call to qsort is not a tail call (a jmp would leave
 * no frame of sort_batch on the stack). */
__attribute__((noipa)) int sort_batch(int *v, size_t n) {
    qsort(v, n, sizeof(*v), compare);
    return v[0];
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    static int v[N];
    char line[16];
    unsigned int state = 1;
    long sorts = 0;
    printf("ready\n");
    fflush(stdout);
    if (!fgets(line, sizeof(line), stdin))
        return 1;
    double end = now() + seconds;
    while (now() < end) {
        for (int i = 0; i < N; i++) {
            state = state * 1103515245u + 12345u;
            v[i] = (int)(state >> 8);
        }
        sink += sort_batch(v, N);
        sorts++;
    }
    printf("sorts=%ld\n", sorts);
    return 0;
}
