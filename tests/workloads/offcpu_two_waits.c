// Ground truth for the offcpu receiver: one thread alternately sleeps (interruptible, S state)
// LONG ms in wait_long() and SHORT ms in wait_short() (default 30 and 10), ROUNDS times,
// measuring with CLOCK_MONOTONIC how long it really spent inside the sleeps. Built -O0 -no-pie
// so the test can check raw return addresses against `nm` without the symbolizer.
// Usage: offcpu_two_waits [rounds [long_ms short_ms]].
// Prints one line: "tid=<tid> long_ns=<n> short_ns=<n> switches=<n>", switches being this
// thread's voluntary context switches during the loop (getrusage RUSAGE_THREAD): on a loaded
// machine a sleep whose timer fires while the thread is still runnable (preempted before it
// reached schedule()) never blocks, so the waits to be seen are these, not 2 x rounds.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/syscall.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long sleep_ms(long ms)
{
    struct timespec req = {ms / 1000, (ms % 1000) * 1000000L};
    long long t0 = now_ns();
    nanosleep(&req, NULL);
    return now_ns() - t0;
}

static long long_ms = 30, short_ms = 10;

__attribute__((noinline)) long long wait_long(void) { return sleep_ms(long_ms); }
__attribute__((noinline)) long long wait_short(void) { return sleep_ms(short_ms); }

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 25;
    if (argc > 3) {
        long_ms = atol(argv[2]);
        short_ms = atol(argv[3]);
    }
    long long long_ns = 0, short_ns = 0;
    struct rusage r0, r1;
    getrusage(RUSAGE_THREAD, &r0);
    for (int i = 0; i < rounds; i++) {
        long_ns += wait_long();
        short_ns += wait_short();
    }
    getrusage(RUSAGE_THREAD, &r1);
    printf("tid=%ld long_ns=%lld short_ns=%lld switches=%ld\n", (long)syscall(SYS_gettid),
           long_ns, short_ns, r1.ru_nvcsw - r0.ru_nvcsw);
    return 0;
}
