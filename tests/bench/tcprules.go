package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"gw/lib/acl"
)

var tcprulesN = flag.Int("tcprules-rules", 1000000, "rules in the file the ACL compilers are timed on")

// tcprulesBench times gw-tcprules against ucspi-tcp's tcprules compiling
// the same rule file, and the lookup a listener makes for each connection
// (open the database, look the client up, close it) in both formats: the
// cdb read here the way tcpserver reads it, the bbolt database through
// lib/acl; then gw's listeners' way (a stat, the database kept open);
// then each check program, a process a probe.
func tcprulesBench(work string) {
	fmt.Printf("\nACL compile and per-connection lookup (%d rules), against ucspi-tcp in the same run\n", *tcprulesN)
	for _, p := range []string{"tcprules", "tcprulescheck"} {
		if _, err := exec.LookPath(p); err != nil {
			fmt.Printf("  skipped: %s not found (scripts/test-peers.sh installs ucspi-tcp)\n", p)
			return
		}
	}
	dir := filepath.Join(work, "tcprules")
	check(os.MkdirAll(dir, 0o755))
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "rules")
	probes := writeRules(src, *tcprulesN)

	compile := func(prog, out string) time.Duration {
		f, err := os.Open(src)
		check(err)
		defer f.Close()
		cmd := exec.Command(prog, out, out+".tmp")
		cmd.Stdin = f
		start := time.Now()
		if b, err := cmd.CombinedOutput(); err != nil {
			check(fmt.Errorf("%s: %v: %s", prog, err, b))
		}
		return time.Since(start)
	}
	cdbPath, dbPath := filepath.Join(dir, "rules.cdb"), filepath.Join(dir, "rules.db")
	tc := compile("tcprules", cdbPath)
	gc := compile(filepath.Join(*binDir, "gw-tcprules"), dbPath)
	size := func(p string) float64 {
		st, err := os.Stat(p)
		check(err)
		return float64(st.Size()) / (1 << 20)
	}
	fmt.Printf("  %-34s %9s %9s %7s\n", "", "tcprules", "gw", "gw/tcp")
	fmt.Printf("  %-34s %8.2fs %8.2fs %6.2fx\n", "compile", tc.Seconds(), gc.Seconds(), gc.Seconds()/tc.Seconds())
	fmt.Printf("  %-34s %7.1fMB %7.1fMB %6.2fx\n", "database size", size(cdbPath), size(dbPath), size(dbPath)/size(cdbPath))

	// In process: open, look up, close, for each probe, as a listener
	// does for each connection.
	perLookup := func(look func(ip string) bool) time.Duration {
		start := time.Now()
		n := 0
		for time.Since(start) < *duration {
			for _, ip := range probes {
				if !look(ip) {
					check(fmt.Errorf("lookup of %s found no rule", ip))
				}
				n++
			}
		}
		return time.Since(start) / time.Duration(n)
	}
	tl := perLookup(func(ip string) bool {
		found, err := cdbTcpserverLookup(cdbPath, ip)
		check(err)
		return found
	})
	gl := perLookup(func(ip string) bool {
		db, err := acl.Open(dbPath)
		check(err)
		d, err := db.Lookup(acl.Remote{IP: ip})
		db.Close()
		check(err)
		return d.Found
	})
	fmt.Printf("  %-34s %8.1fµs %8.1fµs %6.2fx\n", "lookup: open+find+close, in process", us(tl), us(gl), float64(gl)/float64(tl))
	// What gw's listeners do instead (acl.Cache): a stat a connection,
	// the database opened again only when gw-tcprules replaced it.
	cache := &acl.Cache{Path: dbPath}
	defer cache.Close()
	cl := perLookup(func(ip string) bool {
		d, err := cache.Lookup(acl.Remote{IP: ip})
		check(err)
		return d.Found
	})
	fmt.Printf("  %-34s %8.1fµs %8.1fµs %6.2fx\n", "lookup: as the listeners do it", us(tl), us(cl), float64(cl)/float64(tl))

	// As processes: tcprulescheck and gw-tcprulescheck, one a probe.
	perRun := func(prog, db string) time.Duration {
		start := time.Now()
		n := 0
		for time.Since(start) < *duration {
			ip := probes[n%len(probes)]
			cmd := exec.Command(prog, db)
			cmd.Env = []string{"TCPREMOTEIP=" + ip}
			if err := cmd.Run(); err != nil {
				check(fmt.Errorf("%s: %v", prog, err))
			}
			n++
		}
		return time.Since(start) / time.Duration(n)
	}
	tp := perRun("tcprulescheck", cdbPath)
	gp := perRun(filepath.Join(*binDir, "gw-tcprulescheck"), dbPath)
	fmt.Printf("  %-34s %8.0fµs %8.0fµs %6.2fx\n", "check program, a process a probe", us(tp), us(gp), float64(gp)/float64(tp))
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// writeRules writes n rules as a site with many clients might have them:
// mostly exact IPv4 addresses with an environment, some dotted prefixes,
// a default deny last. It returns addresses to probe, each matching a
// rule: exact ones, ones under a prefix, and ones falling to the default.
func writeRules(path string, n int) []string {
	f, err := os.Create(path)
	check(err)
	w := bufio.NewWriterSize(f, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	var probes []string
	for i := range n - 1 {
		var line string
		switch {
		case i%100 == 0: // a /16 as a dotted prefix
			line = fmt.Sprintf("172.%d.:allow,RELAYCLIENT=\"\"\n", i/100%256)
			if len(probes) < 300 {
				probes = append(probes, fmt.Sprintf("172.%d.%d.%d", i/100%256, r.IntN(256), r.IntN(256)))
			}
		default:
			ip := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
			line = fmt.Sprintf("%s:allow,RELAYCLIENT=\"\",DATABYTES=\"%d\"\n", ip, 1000+i)
			if i%(n/600+1) == 0 {
				probes = append(probes, ip)
			}
		}
		w.WriteString(line)
	}
	w.WriteString(":deny\n")
	for i := range 100 {
		probes = append(probes, fmt.Sprintf("192.0.2.%d", i)) // the default
	}
	check(w.Flush())
	check(f.Close())
	return probes
}

// cdbTcpserverLookup opens a tcprules cdb, looks ip up in tcpserver's
// order for a client without a name (the address, then its dotted
// prefixes from longest to shortest, then the empty default) and closes
// it, reporting whether a rule matched. It reads the cdb format directly
// (256 table pointers, then hashed slots), as tcpserver's cdb code does.
func cdbTcpserverLookup(path, ip string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	keys := []string{ip}
	for i := len(ip) - 1; i > 0; i-- {
		if ip[i] == '.' {
			keys = append(keys, ip[:i+1])
		}
	}
	keys = append(keys, "")
	for _, k := range keys {
		found, err := cdbFind(f, k)
		if err != nil || found {
			return found, err
		}
	}
	return false, nil
}

func cdbHash(key string) uint32 {
	h := uint32(5381)
	for i := 0; i < len(key); i++ {
		h = (h + h<<5) ^ uint32(key[i])
	}
	return h
}

func cdbFind(f io.ReaderAt, key string) (bool, error) {
	h := cdbHash(key)
	var b [8]byte
	if _, err := f.ReadAt(b[:], int64(h&255)*8); err != nil {
		return false, err
	}
	pos, slots := binary.LittleEndian.Uint32(b[:4]), binary.LittleEndian.Uint32(b[4:])
	if slots == 0 {
		return false, nil
	}
	start := (h >> 8) % slots
	for i := range slots {
		at := int64(pos) + int64((start+i)%slots)*8
		if _, err := f.ReadAt(b[:], at); err != nil {
			return false, err
		}
		sh, rp := binary.LittleEndian.Uint32(b[:4]), binary.LittleEndian.Uint32(b[4:])
		if rp == 0 {
			return false, nil
		}
		if sh != h {
			continue
		}
		if _, err := f.ReadAt(b[:], int64(rp)); err != nil {
			return false, err
		}
		klen := binary.LittleEndian.Uint32(b[:4])
		if int(klen) != len(key) {
			continue
		}
		k := make([]byte, klen)
		if _, err := f.ReadAt(k, int64(rp)+8); err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		if string(k) == key {
			return true, nil
		}
	}
	return false, nil
}
