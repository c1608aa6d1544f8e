// Ground-truth fixture for the go_runtime receiver: a known number of goroutines spawned
// from spawnWorkers, all blocked on one channel in waitForGo; allocations from allocate;
// a known number of forced GC cycles; goroutines from leakWorkers that never end.
// Arguments: goroutines gcs allocs block_ms leaks. Prints "ready" once set up and waits
// for a line on stdin between phases, so the test attaches before anything it counts.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

var sink [][]byte

//go:noinline
func waitForGo(ch chan int, wg *sync.WaitGroup) {
	<-ch
	wg.Done()
}

//go:noinline
func spawnWorkers(n int, ch chan int, wg *sync.WaitGroup) {
	for i := 0; i < n; i++ {
		wg.Add(1)
		go waitForGo(ch, wg)
	}
}

//go:noinline
func leakForever(ch chan int) {
	<-ch
}

//go:noinline
func leakWorkers(n int, ch chan int) {
	for i := 0; i < n; i++ {
		go leakForever(ch)
	}
}

//go:noinline
func allocate(n int) {
	for i := 0; i < n; i++ {
		b := make([]byte, 4096)
		b[0] = byte(i)
		sink = append(sink, b)
		if len(sink) > 64 {
			sink = sink[:0]
		}
	}
}

//go:noinline
func forceGC(n int) {
	for i := 0; i < n; i++ {
		runtime.GC()
	}
}

func arg(i int, def int) int {
	if len(os.Args) > i {
		v, err := strconv.Atoi(os.Args[i])
		if err == nil {
			return v
		}
	}
	return def
}

func main() {
	goroutines := arg(1, 1000)
	gcs := arg(2, 10)
	allocs := arg(3, 20000)
	blockMs := arg(4, 200)
	leaks := arg(5, 0)
	in := bufio.NewReader(os.Stdin)
	fmt.Println("ready")
	if _, err := in.ReadString('\n'); err != nil {
		os.Exit(3)
	}
	ch := make(chan int)
	var wg sync.WaitGroup
	spawnWorkers(goroutines, ch, &wg)
	leakWorkers(leaks, make(chan int))
	allocate(allocs)
	forceGC(gcs)
	time.Sleep(time.Duration(blockMs) * time.Millisecond)
	for i := 0; i < goroutines; i++ {
		ch <- i
	}
	wg.Wait()
	fmt.Println("done")
	if _, err := in.ReadString('\n'); err != nil {
		os.Exit(3)
	}
}
