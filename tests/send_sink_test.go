package tests

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestSendToSmtpSink: 300 messages of 2 recipients through an smtproutes
// default route to Postfix's smtp-sink, which writes each transaction it
// accepts to a file; every message arrives, the queue empties, and the
// rate is logged.
func TestSendToSmtpSink(t *testing.T) {
	sink := need(t, "smtp-sink")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	in := newSendInstance(t, map[string]string{"smtproutes": fmt.Sprintf(":[127.0.0.1]:%d", port), "concurrencyremote": "20"})
	dump := filepath.Join(in.dir, "sink")
	os.Mkdir(dump, 0o755)
	cmd := exec.Command(sink, "-u", "nobody", "-R", dump, "-d", "%H%M%S.", fmt.Sprintf("127.0.0.1:%d", port), "100")
	if os.Getuid() != 0 {
		cmd = exec.Command(sink, "-R", dump, "-d", "%H%M%S.", fmt.Sprintf("127.0.0.1:%d", port), "100")
	}
	os.Chmod(dump, 0o777)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, "smtp-sink", 5*time.Second, func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	const n = 300
	for i := 0; i < n; i++ {
		in.inject(t, "a@src.test", []string{fmt.Sprintf("r%d@dst.test", i), fmt.Sprintf("s%d@dst.test", i)},
			fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i))
	}
	start := time.Now()
	in.start(t)
	count := func() int {
		ents, _ := os.ReadDir(dump)
		return len(ents)
	}
	waitFor(t, "every message at smtp-sink", 60*time.Second, func() bool { return count() >= n })
	took := time.Since(start)
	waitFor(t, "the queue to empty", 10*time.Second, func() bool { return len(in.messages(t)) == 0 })
	if c := count(); c != n {
		t.Errorf("smtp-sink has %d transactions, want %d", c, n)
	}
	t.Logf("%d messages (2 recipients each) delivered in %v: %.0f messages/s", n, took, float64(n)/took.Seconds())
}
