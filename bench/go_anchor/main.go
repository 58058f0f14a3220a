// iterlock-etcd-anchor: the anchor of D1 and D3, etcd's own Go client (clientv3 3.4, Debian
// golang-etcd-server-dev). Built by bench/CMakeLists.txt in GOPATH mode (GO111MODULE=off). Modes:
//
//	-mode put (D1, the default): times the same puts as D1 (64-byte values over 1,000 keys after 50
//	    warm-up puts) against the same endpoints; prints "p50_ns p99_ns".
//	-mode lag-observer (D3): watches -prefix, prints "ready" once the watch is created, then for each of
//	    the -n events computes its delivery lag, now minus the send time the value carries (CLOCK_REALTIME
//	    ns, shared by the processes of one machine); prints "p50_ns p99_ns".
//	-mode lag-writer (D3): puts -n keys under -prefix one after another, each valued with its send time.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated etcd endpoints")
	n := flag.Int("n", 2000, "timed puts")
	mode := flag.String("mode", "put", "put | lag-observer | lag-writer")
	prefix := flag.String("prefix", "d3go/", "key prefix of the lag modes")
	flag.Parse()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "anchor:", err)
		os.Exit(1)
	}
	defer cli.Close()
	switch *mode {
	case "lag-observer":
		lagObserver(cli, *prefix, *n)
		return
	case "lag-writer":
		lagWriter(cli, *prefix, *n)
		return
	}
	value := strings.Repeat("v", 64)
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("d1go/%d", i), value); err != nil {
			fmt.Fprintln(os.Stderr, "anchor:", err)
			os.Exit(1)
		}
	}
	lat := make([]float64, 0, *n)
	for i := 0; i < *n; i++ {
		t0 := time.Now()
		if _, err := cli.Put(ctx, fmt.Sprintf("d1go/%d", i%1000), value); err != nil {
			fmt.Fprintln(os.Stderr, "anchor:", err)
			os.Exit(1)
		}
		lat = append(lat, float64(time.Since(t0).Nanoseconds()))
	}
	printPercentiles(lat)
}

func printPercentiles(lat []float64) {
	sort.Float64s(lat)
	at := func(p float64) float64 { return lat[int(p*float64(len(lat)-1)+0.5)] }
	fmt.Printf("%.0f %.0f\n", at(0.5), at(0.99))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "anchor:", err)
	os.Exit(1)
}

func lagObserver(cli *clientv3.Client, prefix string, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	wch := cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	lat := make([]float64, 0, n)
	for resp := range wch {
		if err := resp.Err(); err != nil {
			fail(err)
		}
		if resp.Created {
			fmt.Println("ready")
			os.Stdout.Sync()
			continue
		}
		for _, ev := range resp.Events {
			sent, err := strconv.ParseInt(string(ev.Kv.Value), 10, 64)
			if err != nil {
				fail(err)
			}
			lat = append(lat, float64(time.Now().UnixNano()-sent))
		}
		if len(lat) >= n {
			printPercentiles(lat[:n])
			return
		}
	}
	fail(fmt.Errorf("the watch ended after %d of %d events", len(lat), n))
}

func lagWriter(cli *clientv3.Client, prefix string, n int) {
	ctx := context.Background()
	for i := 0; i < n; i++ {
		v := strconv.FormatInt(time.Now().UnixNano(), 10)
		if _, err := cli.Put(ctx, fmt.Sprintf("%s%08d", prefix, i), v); err != nil {
			fail(err)
		}
	}
}
