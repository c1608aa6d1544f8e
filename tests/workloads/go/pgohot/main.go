// pgohot: a CPU-bound Go program with one hot call edge (hotLoop -> (*fnv).Mix, through an
// interface: most of its time, which PGO devirtualizes and inlines) and one hot direct call
// too big for the default inlining budget (hotLoop -> digest, every 8th iteration); newState
// (every iteration, returns a pointer: a heap allocation unless PGO inlines it) is where a
// profile pays. Used by the symbolization tests (known names, lines, an inlined
// helper) and the PGO tests and benchmark (go build -pgo must find these edges).
//
//	pgohot -seconds 5              run for 5 s of wall time
//	pgohot -iterations 200000000   run a fixed amount of work and print the time it took
//	pgohot -cpuprofile cpu.pprof   also write Go's own runtime/pprof CPU profile
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"time"
)

type Mixer interface {
	Mix(x uint64) uint64
}

type fnv struct{ seed uint64 }

func (f *fnv) Mix(x uint64) uint64 {
	x ^= f.seed
	x *= 1099511628211
	return x ^ (x >> 29)
}

type xorshift struct{ k uint64 }

func (m *xorshift) Mix(x uint64) uint64 {
	x ^= x << 13
	x ^= x >> 7
	return x ^ (x << 17) ^ m.k
}

// rotate is small: the compiler inlines it into digest, so its frames are inlined ones.
func rotate(x uint64, k uint) uint64 {
	return x<<k | x>>(64-k)
}

// xorshr is small too, and inlined into digest, but unlike rotate (one ROL) it is several
// instructions: a CPU whose sampled address is the instruction after the interrupted one
// (the AMD EPYC VMs here: perf puts 0 % on every ROL) never names a one-instruction inlined
// body as the leaf, but does land inside this one.
func xorshr(x uint64, s uint) uint64 {
	return x ^ x>>s
}

// digest is hot and above the default inlining budget; PGO may inline it into hotLoop.
func digest(x uint64) uint64 {
	for i := 0; i < 4; i++ {
		x = rotate(x, 7) * 0x9E3779B97F4A7C15
		x = xorshr(x, 31)
		if x&1 == 0 {
			x += 0x632BE59BD9B4E019
		} else {
			x -= 0x8CB92BA72F3D8DD7
		}
		x = rotate(x, 11) ^ (x >> 17)
		x *= 0xBF58476D1CE4E5B9
		x = xorshr(x, 27)
		if x%3 == 0 {
			x = rotate(x, 5) + uint64(i)
		} else if x%5 == 0 {
			x = rotate(x, 9) - uint64(i)
		}
		x *= 0x94D049BB133111EB
		x = xorshr(x, 33)
	}
	return x
}

type state struct{ a, b, c, d uint64 }

// newState is called every iteration and returns a pointer, so while it is not inlined its
// state escapes to the heap (an allocation per call); its rare path makes it too big to
// inline without a profile. Inlined by PGO, the state stays on the caller's stack.
func newState(x uint64) *state {
	s := &state{a: x, b: x ^ 0x9E3779B97F4A7C15, c: x >> 3, d: x << 5}
	if x&0xfff == 0 {
		for i := 0; i < 3; i++ {
			s.a = rotate(s.a, 13) ^ (s.b >> 7) ^ uint64(i)
			s.b *= 0xD6E8FEB86659FD93
			if s.a%7 == 0 {
				s.c = rotate(s.c, 3)
			} else if s.a%11 == 0 {
				s.d = rotate(s.d, 19) + 1
			}
		}
	}
	return s
}

var sink uint64

// hotLoop stays a function of its own: inlined into main (PGO finds it hot too), the calls
// inside it would be call sites of main, which the profile does not know as hot.
//
//go:noinline
func hotLoop(m Mixer, n int) uint64 {
	var acc uint64
	for i := 0; i < n; i++ {
		acc += m.Mix(uint64(i) ^ acc)
		st := newState(acc)
		acc += st.a ^ st.b ^ st.c ^ st.d
		if i&7 == 0 {
			acc ^= digest(acc)
		}
	}
	return acc
}

// coldPath calls digest too, rarely: the edge from hotLoop must be the hot one.
//
//go:noinline
func coldPath(n int) uint64 {
	var acc uint64
	for i := 0; i < n; i++ {
		acc += digest(uint64(i))
	}
	return acc
}

func pick(i int) Mixer {
	if i%64 == 63 {
		return &xorshift{k: uint64(i)}
	}
	return &fnv{seed: uint64(i)}
}

func main() {
	seconds := flag.Float64("seconds", 0, "run for this many seconds")
	iterations := flag.Int("iterations", 0, "run this many hot-loop iterations")
	cpuprofile := flag.String("cpuprofile", "", "write a runtime/pprof CPU profile here")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			panic(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			panic(err)
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	const chunk = 1 << 16
	done := 0
	for round := 0; ; round++ {
		if *iterations > 0 && done >= *iterations {
			break
		}
		if *iterations == 0 && time.Since(start).Seconds() >= *seconds {
			break
		}
		sink += hotLoop(pick(round), chunk)
		sink += coldPath(chunk / 256)
		done += chunk
	}
	fmt.Printf("iterations=%d seconds=%.6f sink=%d\n", done, time.Since(start).Seconds(), sink%10)
}
