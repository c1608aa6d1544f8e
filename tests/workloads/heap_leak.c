/* Ground truth for the heap receiver: leak() leaks 4 KiB per call (and touches it, as a
 * program using its memory does), churn() allocates 256-768 bytes and frees them at once,
 * and real work (a time-based spin) separates the calls.
 *
 * Usage: heap_leak SECONDS [CHURN_PER_LEAK]. It waits for a line on stdin (the test starts
 * it once the collector is attached), runs for SECONDS, prints
 * "leak_calls N leaked_bytes N churn_calls N", and keeps its memory until stdin closes. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static volatile unsigned long sink;

static void work(double seconds) {
    double end = now() + seconds;
    while (now() < end)
        sink++;
}

static char **kept;
static long nkept, cap;

void leak(void) {
    char *p = malloc(4096);
    for (int i = 0; i < 4096; i += 64)
        p[i] = (char)i;
    if (nkept == cap) {
        cap = cap ? cap * 2 : 1024;
        kept = realloc(kept, cap * sizeof(*kept));
    }
    kept[nkept++] = p;
}

void churn(unsigned n) {
    char *p = malloc(256 + n % 513);
    p[0] = (char)n;
    sink += p[0];
    free(p);
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    int per_leak = argc > 2 ? atoi(argv[2]) : 20;
    char line[64];
    if (!fgets(line, sizeof(line), stdin))
        return 1;
    long leaks = 0, churns = 0;
    double end = now() + seconds;
    while (now() < end) {
        leak();
        leaks++;
        work(50e-6);
        for (int i = 0; i < per_leak; i++) {
            churn((unsigned)(churns * 2654435761u));
            churns++;
            work(10e-6);
        }
    }
    printf("leak_calls %ld leaked_bytes %ld churn_calls %ld\n", leaks, leaks * 4096, churns);
    fflush(stdout);
    while (fgets(line, sizeof(line), stdin))
        ;
    return 0;
}
