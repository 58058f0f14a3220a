// iterlock-etcd-anchor: D1's anchor, etcd's own Go client (clientv3 3.4, Debian golang-etcd-server-dev),
// timing the same puts as D1 (64-byte values over 1,000 keys after 50 warm-up puts) against the same
// endpoints. Prints "p50_ns p99_ns". Built by bench/CMakeLists.txt in GOPATH mode (GO111MODULE=off).
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
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated etcd endpoints")
	n := flag.Int("n", 2000, "timed puts")
	flag.Parse()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "anchor:", err)
		os.Exit(1)
	}
	defer cli.Close()
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
	sort.Float64s(lat)
	at := func(p float64) float64 { return lat[int(p*float64(len(lat)-1)+0.5)] }
	fmt.Printf("%.0f %.0f\n", at(0.5), at(0.99))
}
