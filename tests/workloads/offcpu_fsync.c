// Ground truth for uninterruptible (D state) waits: write 64 KiB and fsync it, over and over,
// to a file on a real disk. fsync waits for the I/O in io_schedule(), TASK_UNINTERRUPTIBLE.
// Usage: offcpu_fsync <path> <rounds>. Prints "tid=<tid> fsync_ns=<wall time in fsync>
// fsync_sleep_ns=<of which off CPU and not runnable>": the wall time less this thread's CPU time
// and run-queue delay (/proc/thread-self/schedstat) over the same calls. Part of fsync's wall
// time is CPU work, and on a loaded machine a runnable wait: neither is a D wait.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static char buf[65536];

static long long thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* This thread's run-queue delay so far, in ns (the second schedstat field). Read outside the
 * timed window: reading costs CPU time, but adds no delay unless the thread is preempted. */
static long long run_delay_ns(void)
{
    FILE *f = fopen("/proc/thread-self/schedstat", "r");
    long long run = 0, delay = 0;
    if (!f || fscanf(f, "%lld %lld", &run, &delay) != 2)
        exit(4);
    fclose(f);
    return delay;
}

static long long sleep_total;

/* libc's fsync keeps no frame pointer, so a frame-pointer walk skips its caller (this one):
 * write_and_sync() is the function the test finds in the stacks. */
static long long timed_fsync(int fd)
{
    long long delay0 = run_delay_ns();
    long long cpu0 = thread_cpu_ns();
    long long t0 = now_ns();
    if (fsync(fd) != 0)
        exit(3);
    long long wall = now_ns() - t0;
    long long cpu = thread_cpu_ns() - cpu0;
    sleep_total += wall - cpu - (run_delay_ns() - delay0);
    return wall;
}

__attribute__((noinline)) long long write_and_sync(int fd)
{
    if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
        exit(2);
    return timed_fsync(fd);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 1;
    int rounds = atoi(argv[2]);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return 1;
    memset(buf, 'x', sizeof(buf));
    long long total = 0;
    for (int i = 0; i < rounds; i++) {
        total += write_and_sync(fd);
        if (i % 16 == 15)
            lseek(fd, 0, SEEK_SET);
    }
    close(fd);
    unlink(argv[1]);
    printf("tid=%ld fsync_ns=%lld fsync_sleep_ns=%lld\n", (long)syscall(SYS_gettid), total,
           sleep_total);
    return 0;
}
