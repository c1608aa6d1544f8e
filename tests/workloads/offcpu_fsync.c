// Ground truth for uninterruptible (D state) waits: write 64 KiB and fsync it, over and over,
// to a file on a real disk. fsync waits for the I/O in io_schedule(), TASK_UNINTERRUPTIBLE.
// Usage: offcpu_fsync <path> <rounds>. Prints "tid=<tid> fsync_ns=<time spent in fsync>".
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

/* libc's fsync keeps no frame pointer, so a frame-pointer walk skips its caller (this one):
 * write_and_sync() is the function the test finds in the stacks. */
static long long timed_fsync(int fd)
{
    long long t0 = now_ns();
    if (fsync(fd) != 0)
        exit(3);
    return now_ns() - t0;
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
    printf("tid=%ld fsync_ns=%lld\n", (long)syscall(SYS_gettid), total);
    return 0;
}
