// Decl-line fixture (C++): a method declared in its class and defined outside it
// (DW_AT_specification), one defined inside its class, a template, and an inline function.
#include <cstdio>
#include <cstdlib>

namespace shapes {

struct Grid {
    explicit Grid(int n) : n_(n) {}
    long
    sum() const; // declared here, but its DW_AT_decl_line is the definition's
    __attribute__((noinline)) int
    cell(int i) const // DECL:Grid::cell
    {
        return (i * 7) % n_;
    }
    int n_;
};

inline int
clamp(int v, int hi) // DECL:clamp
{
    return v > hi ? hi : v;
}

template <typename T>
__attribute__((noinline)) T
scaled(T v, T k) // DECL:scaled
{
    return v * k + static_cast<T>(clamp(static_cast<int>(v), 100));
}

long
Grid::sum() const // DECL:Grid::sum
{
    long total = 0;
    for (int i = 0; i < n_; i++)
        total += cell(i) + scaled<long>(i, 3);
    return total;
}

}  // namespace shapes

int
main(int argc, char **argv) // DECL:main
{
    long rounds = argc > 1 ? std::atol(argv[1]) : 1, total = 0;  // rounds of the hot loop
    for (long r = 0; r < rounds; r++) {
        shapes::Grid g(1000 + static_cast<int>(r & 7));
        total += g.sum();
    }
    std::printf("%ld %f\n", total, shapes::scaled<double>(1.5, 2.0));
    return 0;
}
