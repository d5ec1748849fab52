package tests

import (
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"gw/tests/internal/clamdtest"
	"gw/tests/internal/spamdtest"
)

// The scanners' test markers. clamd knows markerVirus by a signature the
// tests write (no freshclam, no downloaded database); spamd knows GTUBE
// from Debian's shipped rules.
const (
	markerVirus = "GATEWAY-TEST-MARKER-12345"
	markerSig   = clamdtest.Signature
	gtube       = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
)

// scanPeers are one clamd and one spamd for the whole test binary, on
// loopback, in a directory of their own.
type scanPeers struct {
	dir       string
	pids      []int  // process groups of clamd and spamd
	clamdSock string // unix socket
	spamdAddr string // 127.0.0.1:port
	spamdSock string // the unix socket spamd also listens on
	err       error
}

var (
	peersOnce sync.Once
	peers     scanPeers
)

// scanners starts clamd and spamd once and returns them; it fails the test
// if either is missing or does not come up.
func scanners(t *testing.T) *scanPeers {
	t.Helper()
	need(t, "clamd")
	need(t, "spamd")
	peersOnce.Do(func() {
		peers.err = peers.start()
		afterAll = append(afterAll, peers.stop)
	})
	if peers.err != nil {
		t.Fatalf("scanners: %v (files in %s)", peers.err, peers.dir)
	}
	t.Cleanup(func() {
		if t.Failed() {
			scanFailed = true
			t.Logf("scanners' files kept in %s", peers.dir)
		}
	})
	return &peers
}

// start runs both daemons from one locked OS thread that never exits, so
// Pdeathsig ends them when the test binary does (Pdeathsig follows the
// thread that forked, not the process).
func (p *scanPeers) start() error {
	dir, err := os.MkdirTemp("", "gw-e2e-scanners-")
	if err != nil {
		return err
	}
	p.dir = dir
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		done <- p.startClamd()
		done <- p.startSpamd()
		select {} // keep the thread: its death would signal the daemons
	}()
	if err := <-done; err != nil {
		return err
	}
	return <-done
}

// stop ends both daemons and removes their directory, unless a test
// failed: then the directory stays for its logs.
func (p *scanPeers) stop() {
	for _, pid := range p.pids {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	if p.err == nil && !scanFailed {
		os.RemoveAll(p.dir)
	}
}

// scanFailed is set by a scanner test that fails, to keep the daemons' logs.
var scanFailed bool

func daemonAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

func (p *scanPeers) startClamd() error {
	c, err := clamdtest.Start(p.dir, markerVirus, daemonAttr())
	if err != nil {
		return err
	}
	p.clamdSock = c.Sock
	p.pids = append(p.pids, c.Cmd.Process.Pid)
	return nil
}

func (p *scanPeers) startSpamd() error {
	sp, err := spamdtest.Start(p.dir, 2, daemonAttr())
	if err != nil {
		return err
	}
	p.spamdAddr, p.spamdSock = sp.Addr, sp.Sock
	p.pids = append(p.pids, sp.Cmd.Process.Pid)
	return nil
}

func pollUntil(try func() error, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		err := try()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
