// Package spamdtest starts a real spamd for the end-to-end tests and make
// bench: Debian's shipped rules (GTUBE among them, no sa-update), no
// network tests (-L), a loopback port and a unix socket, its files in a
// directory of the caller's.
package spamdtest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Spamd is a running spamd.
type Spamd struct {
	Addr string // 127.0.0.1:port
	Sock string // the unix socket it also listens on
	Cmd  *exec.Cmd
}

// Start runs spamd with children child processes (at least 1) and waits
// up to 90 seconds for it to answer PING. attr is the process's
// attributes (nil: its own process group).
func Start(dir string, children int, attr *syscall.SysProcAttr) (*Spamd, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Spamd{Addr: l.Addr().String(), Sock: filepath.Join(dir, "spamd.sock")}
	l.Close()
	home := filepath.Join(dir, "sa")
	if err := os.MkdirAll(home, 0o777); err != nil {
		return nil, err
	}
	os.Chmod(home, 0o777)
	n := strconv.Itoa(max(children, 1))
	// All the children from the start: spamd grows from its
	// min-children as clients queue, and a ceiling measured while it
	// grows is lower than the one the next figure meets.
	argv := []string{"-x", "-L", "--listen=" + s.Addr, "--listen=" + s.Sock, "--max-children=" + n, "--min-children=" + n,
		"--helper-home-dir=" + home, "-s", filepath.Join(dir, "spamd.log")}
	if os.Geteuid() == 0 {
		argv = append(argv, "-u", "debian-spamd")
	}
	if attr == nil {
		attr = &syscall.SysProcAttr{Setpgid: true}
	}
	s.Cmd = exec.Command("spamd", argv...)
	s.Cmd.SysProcAttr = attr
	out, _ := os.Create(filepath.Join(dir, "spamd.out"))
	s.Cmd.Stdout, s.Cmd.Stderr = out, out
	if err := s.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("spamd: %w", err)
	}
	go s.Cmd.Wait()
	end := time.Now().Add(90 * time.Second)
	for {
		err := s.ping()
		if err == nil {
			return s, nil
		}
		if time.Now().After(end) {
			s.Stop()
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Spamd) ping() error {
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("PING SPAMC/1.5\r\n\r\n"))
	r, err := bufio.NewReader(c).ReadString('\n')
	if !strings.Contains(r, "PONG") {
		return fmt.Errorf("spamd PING: %q %v", r, err)
	}
	return nil
}

// Stop kills spamd's process group.
func (s *Spamd) Stop() {
	if s.Cmd != nil && s.Cmd.Process != nil {
		syscall.Kill(-s.Cmd.Process.Pid, syscall.SIGKILL)
		s.Cmd.Process.Kill()
	}
}
