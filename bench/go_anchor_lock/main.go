// iterlock-etcd-lock-anchor: D5's anchor, etcd's own lock recipe (clientv3/concurrency.Mutex 3.4, Debian
// golang-etcd-server-dev), timed the way D5 times iterlock_etcd: an uncontended Lock + Unlock, and the
// hand-off from the holder's Unlock call to the return of a waiter's Lock, the waiter on its own client and
// session, queued 150 ms before the release (handoff) or asking 3 ms before it (handoff_short).
// Prints "acquire_p50_ns handoff_p50_ns handoff_p99_ns handoff_short_p50_ns". GOPATH mode (GO111MODULE=off).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
)

func fail(err error) {
	fmt.Fprintln(os.Stderr, "lock anchor:", err)
	os.Exit(1)
}

func session(eps []string) (*clientv3.Client, *concurrency.Session) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		fail(err)
	}
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(60))
	if err != nil {
		fail(err)
	}
	return cli, s
}

func pct(v []float64, p float64) float64 {
	sort.Float64s(v)
	return v[int(p*float64(len(v)-1)+0.5)]
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated etcd endpoints")
	n := flag.Int("n", 30, "hand-offs per case (acquires: 5n)")
	flag.Parse()
	eps := strings.Split(*endpoints, ",")
	ctx := context.Background()
	pfx := fmt.Sprintf("d5go/%d/", time.Now().UnixNano())
	cli, sa := session(eps)
	_, sb := session(eps)
	a := concurrency.NewMutex(sa, pfx)
	b := concurrency.NewMutex(sb, pfx)

	acq := []float64{}
	for i := 0; i < 5**n; i++ {
		t0 := time.Now()
		if err := a.Lock(ctx); err != nil {
			fail(err)
		}
		if err := a.Unlock(ctx); err != nil {
			fail(err)
		}
		acq = append(acq, float64(time.Since(t0).Nanoseconds()))
	}
	hand := [2][]float64{}
	for short := 0; short < 2; short++ {
		for i := 0; i < *n; i++ {
			if err := a.Lock(ctx); err != nil {
				fail(err)
			}
			done := make(chan time.Time)
			go func() {
				if err := b.Lock(ctx); err != nil {
					fail(err)
				}
				done <- time.Now()
			}()
			if short == 1 {
				time.Sleep(3 * time.Millisecond)
			} else {
				for {
					r, err := cli.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithCountOnly())
					if err != nil {
						fail(err)
					}
					if r.Count >= 2 {
						break
					}
					time.Sleep(time.Millisecond)
				}
				time.Sleep(150 * time.Millisecond)
			}
			rel := time.Now()
			if err := a.Unlock(ctx); err != nil {
				fail(err)
			}
			got := <-done
			hand[short] = append(hand[short], float64(got.Sub(rel).Nanoseconds()))
			if err := b.Unlock(ctx); err != nil {
				fail(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	fmt.Printf("%.0f %.0f %.0f %.0f\n", pct(acq, 0.5), pct(hand[0], 0.5), pct(hand[0], 0.99), pct(hand[1], 0.5))
}
