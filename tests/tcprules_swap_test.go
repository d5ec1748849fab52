package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gw/lib/acl"
)

// swapRules returns one of two rule sets that answer differently for the
// same clients: generation "x" allows 10.0.0.0/16 by exact rules and
// denies by prefix; generation "y" the other way round, with other
// environments. Both are long, so that writing one takes a while.
func swapRules(gen string) string {
	var b strings.Builder
	for i := 0; i < 3000; i++ {
		ip := fmt.Sprintf("10.0.%d.%d", i/250, i%250)
		if gen == "x" {
			fmt.Fprintf(&b, "%s:allow,GEN=\"x\",N=\"%d\"\n", ip, i)
		} else if i%2 == 0 {
			fmt.Fprintf(&b, "%s:deny,GEN=\"y\"\n", ip)
		}
	}
	if gen == "x" {
		b.WriteString("10.0.:deny\n=.example.com:allow,GEN=\"x\"\n:allow,GEN=\"x\",DEFAULT=\"1\"\n")
	} else {
		b.WriteString("10.0.:allow,GEN=\"y\",PREFIX=\"1\"\n10.0.0.0/8:deny\n:deny\n")
	}
	return b.String()
}

// TestTcprulesSwap replaces a rules database in a loop with gw-tcprules
// while goroutines (opening it per lookup, as listeners do) and
// gw-tcprulescheck processes look clients up: every answer must be the
// whole answer of the old or of the new rule set, and no open may fail.
func TestTcprulesSwap(t *testing.T) {
	dir := workDir(t)
	db := filepath.Join(dir, "rules.db")
	clients := []acl.Remote{
		{IP: "10.0.0.0"}, {IP: "10.0.0.1"}, {IP: "10.0.11.249"}, {IP: "10.0.12.3"},
		{IP: "10.9.9.9"}, {IP: "192.0.2.1", Host: "a.example.com", HasHost: true}, {IP: "192.0.2.1"},
	}
	// The two answers each client may get.
	want := make([]map[string]string, len(clients))
	for i := range want {
		want[i] = map[string]string{}
	}
	for _, gen := range []string{"x", "y"} {
		path := filepath.Join(dir, gen+".db")
		if r := rulesRun(t, nil, swapRules(gen), bin("gw-tcprules"), path, path+".tmp"); r.code != 0 {
			t.Fatalf("gw-tcprules: %+v", r)
		}
		d, err := acl.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range clients {
			got, err := d.Lookup(c)
			if err != nil {
				t.Fatal(err)
			}
			want[i][got.Format()] = gen
		}
		d.Close()
	}
	for i, w := range want {
		if len(w) != 2 {
			t.Fatalf("client %+v gets the same answer from both rule sets: %q", clients[i], w)
		}
	}
	if r := rulesRun(t, nil, swapRules("x"), bin("gw-tcprules"), db, db+".tmp"); r.code != 0 {
		t.Fatalf("gw-tcprules: %+v", r)
	}

	var stop atomic.Bool
	var swaps, lookups, procs atomic.Int64
	seen := [2]atomic.Int64{}
	var wg sync.WaitGroup
	check := func(i int, got string) {
		switch want[i][got] {
		case "x":
			seen[0].Add(1)
		case "y":
			seen[1].Add(1)
		default:
			t.Errorf("client %+v got %q, neither rule set's answer", clients[i], got)
			stop.Store(true)
		}
	}
	wg.Add(1)
	go func() { // the writer
		defer wg.Done()
		for n := 0; !stop.Load(); n++ {
			gen := []string{"y", "x"}[n%2]
			if r := rulesRun(t, nil, swapRules(gen), bin("gw-tcprules"), db, db+".tmp"); r.code != 0 {
				t.Errorf("gw-tcprules: %+v", r)
				stop.Store(true)
			}
			swaps.Add(1)
		}
	}()
	for w := 0; w < 8; w++ { // listeners in this process
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n := w; !stop.Load(); n++ {
				i := n % len(clients)
				d, err := acl.Open(db)
				if err != nil {
					t.Errorf("open during a swap: %v", err)
					stop.Store(true)
					return
				}
				got, err := d.Lookup(clients[i])
				d.Close()
				if err != nil {
					t.Errorf("lookup during a swap: %v", err)
					stop.Store(true)
					return
				}
				check(i, got.Format())
				lookups.Add(1)
			}
		}(w)
	}
	for w := 0; w < 2; w++ { // check processes
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n := w; !stop.Load(); n++ {
				i := n % len(clients)
				env := []string{"TCPREMOTEIP=" + clients[i].IP}
				if clients[i].HasHost {
					env = append(env, "TCPREMOTEHOST="+clients[i].Host)
				}
				r := rulesRun(t, env, "", bin("gw-tcprulescheck"), db)
				if r.code != 0 {
					t.Errorf("gw-tcprulescheck during a swap: %+v", r)
					stop.Store(true)
					return
				}
				check(i, r.stdout)
				procs.Add(1)
			}
		}(w)
	}
	time.Sleep(6 * time.Second)
	stop.Store(true)
	wg.Wait()
	t.Logf("%d swaps, %d lookups in process, %d by gw-tcprulescheck; answers x %d, y %d",
		swaps.Load(), lookups.Load(), procs.Load(), seen[0].Load(), seen[1].Load())
	if swaps.Load() < 10 || seen[0].Load() == 0 || seen[1].Load() == 0 {
		t.Error("the test saw too few swaps or only one rule set")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("files left in %s: %d, want 3 (x.db, y.db, rules.db)", dir, len(entries))
	}
}
