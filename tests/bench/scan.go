package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// scanBench measures gw-smtpd's acceptance rate with gw-scan as its
// QMAILQUEUE (built-in MIME rules only; then with clamd) against the same
// path without it, in one run, as ratios. Each client session sends
// messages one after another; a runner empties the queue meanwhile.
func scanBench(work string) {
	fmt.Printf("\ngw-scan in the acceptance path: gw-smtpd --listen, 8 sessions, %s a figure\n", *duration)
	fmt.Printf("%-28s %5s %9s %7s\n", "path", "size", "msg/s", "ratio")
	clamdSock, stopClamd, err := scanBenchClamd(work)
	if err != nil {
		fmt.Printf("clamd: not measured: %v\n", err)
	}
	defer stopClamd()
	for _, size := range []int{1 << 10, 10 << 10, 100 << 10} {
		base := scanBenchPath(work, size, nil)
		fmt.Printf("%-28s %4dK %9.0f %6.2fx\n", "gw-smtpd -> gw-queue", size>>10, base, 1.0)
		rules := scanBenchPath(work, size, map[string]string{})
		fmt.Printf("%-28s %4dK %9.0f %6.2fx\n", "  + gw-scan (MIME rules)", size>>10, rules, rules/base)
		if clamdSock != "" {
			clam := scanBenchPath(work, size, map[string]string{"clamd": clamdSock})
			fmt.Printf("%-28s %4dK %9.0f %6.2fx\n", "  + gw-scan (rules + clamd)", size>>10, clam, clam/base)
		}
	}
}

// scanBenchPath runs gw-smtpd on a fresh queue, with gw-scan and the given
// control files when scan is not nil, and returns messages a second.
func scanBenchPath(work string, size int, scan map[string]string) float64 {
	name := fmt.Sprintf("scanbench-%d-%v", size, scan != nil)
	if scan != nil && scan["clamd"] != "" {
		name += "-clamd"
	}
	ctl := filepath.Join(work, name+"-control")
	check(os.MkdirAll(ctl, 0o755))
	defer os.RemoveAll(ctl)
	files := map[string]string{"me": "bench.example.net", "rcpthosts": "example.net"}
	for k, v := range scan {
		files[k] = v
	}
	for k, v := range files {
		check(os.WriteFile(filepath.Join(ctl, k), []byte(v+"\n"), 0o644))
	}
	return withQueue(work, name, func(dir string) result {
		addr := scanFreeAddr()
		cmd := exec.Command(filepath.Join(*binDir, "gw-smtpd"), "--control-dir", ctl, "--listen", addr, "--per-ip", "0")
		cmd.Env = append(os.Environ(), "GW_QUEUE="+dir, "GW_QUEUED=")
		if scan != nil {
			cmd.Env = append(cmd.Env, "QMAILQUEUE="+filepath.Join(*binDir, "gw-scan"), "GW_CONTROL_DIR="+ctl)
		}
		var logs bytes.Buffer
		cmd.Stderr = &logs
		check(cmd.Start())
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		check(scanWait(addr))
		body := bytes.ReplaceAll(message(size), []byte("\n"), []byte("\r\n"))
		clients := make(chan *smtp.Client, 8)
		for i := 0; i < 8; i++ {
			c, err := smtp.Dial(addr)
			check(err)
			check(c.Hello("client.example"))
			clients <- c
		}
		rate := run(8, nil, func() error {
			c := <-clients
			defer func() { clients <- c }()
			if err := c.Mail("bench@example.org", nil); err != nil {
				return err
			}
			if err := c.Rcpt("sink@example.net", nil); err != nil {
				return err
			}
			w, err := c.Data()
			if err != nil {
				return err
			}
			w.Write(body)
			if err := w.Close(); err != nil {
				return fmt.Errorf("%v\n%s", err, scanTail(logs.String()))
			}
			return nil
		})
		close(clients)
		for c := range clients {
			c.Quit()
		}
		return result{rate: rate}
	}).rate
}

// scanBenchClamd starts clamd with one custom signature (no downloaded
// database) on a unix socket in work.
func scanBenchClamd(work string) (sock string, stop func(), err error) {
	stop = func() {}
	if _, err := exec.LookPath("clamd"); err != nil {
		return "", stop, err
	}
	dir := filepath.Join(work, "clamd")
	check(os.MkdirAll(filepath.Join(dir, "db"), 0o755))
	sig := "Bench.Marker:0:*:" + hex.EncodeToString([]byte("GATEWAY-BENCH-MARKER")) + "\n"
	check(os.WriteFile(filepath.Join(dir, "db", "bench.ndb"), []byte(sig), 0o644))
	sock = filepath.Join(dir, "clamd.sock")
	conf := fmt.Sprintf("LogFile %s/clamd.log\nDatabaseDirectory %s/db\nLocalSocket %s\nForeground yes\nMaxThreads 8\n", dir, dir, sock)
	check(os.WriteFile(filepath.Join(dir, "clamd.conf"), []byte(conf), 0o644))
	cmd := exec.Command("clamd", "-c", filepath.Join(dir, "clamd.conf"))
	if err := cmd.Start(); err != nil {
		return "", stop, err
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait() }
	for i := 0; i < 600; i++ {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Write([]byte("zPING\x00"))
			r, _ := bufio.NewReader(c).ReadString(0)
			c.Close()
			if r == "PONG\x00" {
				return sock, stop, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", stop, fmt.Errorf("clamd did not answer on %s", sock)
}

func scanFreeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().String()
}

func scanWait(addr string) error {
	for i := 0; i < 250; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s", addr)
}

func scanTail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], "\n")
}
