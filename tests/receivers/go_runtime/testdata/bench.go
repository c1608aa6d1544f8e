// The go_runtime overhead benchmark's workload: a goroutine per request (a go statement,
// a goroutine exit), a semaphore channel, a work queue to a pool of hashing workers and a
// reply channel per request (three channel waits and wake-ups), a few allocations.
// Arguments: requests, hash rounds of 1 KiB per request (the work between runtime events).
// Prints "ready", waits for a line, runs, prints "elapsed_ns=<n>".
package main

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

type job struct {
	buf   []byte
	reply chan [32]byte
}

//go:noinline
func worker(jobs <-chan job, rounds int) {
	for j := range jobs {
		sum := sha256.Sum256(j.buf)
		for i := 1; i < rounds; i++ {
			copy(j.buf, sum[:])
			sum = sha256.Sum256(j.buf)
		}
		j.reply <- sum
	}
}

//go:noinline
func handle(i int, jobs chan<- job, sem chan struct{}, wg *sync.WaitGroup, sink *[32]byte) {
	defer wg.Done()
	buf := make([]byte, 1024)
	buf[0] = byte(i)
	reply := make(chan [32]byte, 1)
	jobs <- job{buf, reply}
	sum := <-reply
	sink[i%32] ^= sum[0]
	<-sem
}

func arg(i int, def int) int {
	if len(os.Args) > i {
		if v, err := strconv.Atoi(os.Args[i]); err == nil {
			return v
		}
	}
	return def
}

func main() {
	requests := arg(1, 200000)
	rounds := arg(2, 16)
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		os.Exit(3)
	}
	jobs := make(chan job)
	for w := 0; w < 4; w++ {
		go worker(jobs, rounds)
	}
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var sink [32]byte
	start := time.Now()
	for i := 0; i < requests; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go handle(i, jobs, sem, &wg, &sink)
	}
	wg.Wait()
	fmt.Printf("elapsed_ns=%d sink=%d\n", time.Since(start).Nanoseconds(), sink[0])
}
