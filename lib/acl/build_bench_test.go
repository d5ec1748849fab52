package acl

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
)

// bigRules returns n rules shaped as tests/bench writes them: mostly
// exact IPv4 addresses with an environment, a dotted prefix every
// hundredth line, a default deny last.
func bigRules(n int) []byte {
	var b bytes.Buffer
	for i := range n - 1 {
		if i%100 == 0 {
			fmt.Fprintf(&b, "172.%d.:allow,RELAYCLIENT=\"\"\n", i/100%256)
			continue
		}
		fmt.Fprintf(&b, "10.%d.%d.%d:allow,RELAYCLIENT=\"\",DATABYTES=\"%d\"\n", i>>16&255, i>>8&255, i&255, 1000+i)
	}
	b.WriteString(":deny\n")
	return b.Bytes()
}

// BenchmarkBuild compiles a million rules into a database, as
// gw-tcprules does (go test -bench Build -benchtime 1x -cpuprofile ...).
func BenchmarkBuild(b *testing.B) {
	in := bigRules(1000000)
	dir := b.TempDir()
	b.ResetTimer()
	for range b.N {
		if err := Build(bytes.NewReader(in), filepath.Join(dir, "r.db"), filepath.Join(dir, "r.tmp"), nil); err != nil {
			b.Fatal(err)
		}
	}
}
