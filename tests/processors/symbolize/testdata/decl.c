/* Decl-line fixture (C): each function's name is on a line of its own, above its body, so
 * DW_AT_decl_line (the DECL: marker) differs from the line of its first instruction. */
#include <stdio.h>
#include <stdlib.h>

static inline int
square(int x) /* DECL:square */
{
    return x * x;
}

__attribute__((noinline)) int
weigh(int a, /* DECL:weigh */
      int b)
{
    int s = square(a) + b;
    return s ^ (s >> 3);
}

__attribute__((noinline)) static long
accumulate(int n) /* DECL:accumulate */
{
    long total = 0;
    for (int i = 0; i < n; i++)
        total += weigh(i, n - i);
    return total;
}

int
main(int argc, char **argv) /* DECL:main */
{
    /* argv[1]: rounds of the hot loop (the BPF test burns a few seconds in it) */
    long rounds = argc > 1 ? atol(argv[1]) : 1, total = 0;
    for (long r = 0; r < rounds; r++)
        total += accumulate(1000 + (int)(r & 7));
    printf("%ld\n", total);
    return 0;
}
