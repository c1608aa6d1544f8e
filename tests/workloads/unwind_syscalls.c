/* Ground truth for unwinding from the registers saved at kernel entry (build: gcc -O2 -g):
 * in_kernel() spends most of its time inside getppid(2), so most cpu-clock samples interrupt
 * kernel code and the user stack must come from the task's pt_regs, not the sample's.
 * Usage: unwind_syscalls SECONDS; prints "ready", waits for a line on stdin, prints calls=N. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noipa)) long in_kernel(long n) {
    long sum = 0;
    for (long i = 0; i < n; i++)
        sum += syscall(SYS_getppid);
    return sum;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    char line[16];
    long calls = 0;
    printf("ready\n");
    fflush(stdout);
    if (!fgets(line, sizeof(line), stdin))
        return 1;
    double end = now() + seconds;
    while (now() < end) {
        in_kernel(1000);
        calls += 1000;
    }
    printf("calls=%ld\n", calls);
    return 0;
}
