// Package clamdtest starts a real clamd for the end-to-end tests: a
// signature database of one custom signature the caller names (no
// freshclam, no downloaded database), a unix socket, its files in a
// directory of the caller's.
package clamdtest

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Signature is the name clamd reports for the marker.
const Signature = "Test.Gateway.Marker.UNOFFICIAL"

// Clamd is a running clamd.
type Clamd struct {
	Sock string // its unix socket
	Cmd  *exec.Cmd
}

// Start runs clamd with files in dir, knowing marker (a plain string) as
// Test.Gateway.Marker, and waits up to a minute for it to answer PING.
// attr is the started process's attributes (nil: its own process group).
func Start(dir, marker string, attr *syscall.SysProcAttr) (*Clamd, error) {
	db := filepath.Join(dir, "clamdb")
	if err := os.MkdirAll(db, 0o755); err != nil {
		return nil, err
	}
	sig := fmt.Sprintf("Test.Gateway.Marker:0:*:%s\n", hex.EncodeToString([]byte(marker)))
	if err := os.WriteFile(filepath.Join(db, "custom.ndb"), []byte(sig), 0o644); err != nil {
		return nil, err
	}
	c := &Clamd{Sock: filepath.Join(dir, "clamd.sock")}
	conf := fmt.Sprintf("LogFile %[1]s/clamd.log\nDatabaseDirectory %[2]s\nLocalSocket %[3]s\nForeground yes\nStreamMaxLength 2M\nMaxThreads 4\n", dir, db, c.Sock)
	cf := filepath.Join(dir, "clamd.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if attr == nil {
		attr = &syscall.SysProcAttr{Setpgid: true}
	}
	c.Cmd = exec.Command("clamd", "-c", cf)
	c.Cmd.SysProcAttr = attr
	out, _ := os.Create(filepath.Join(dir, "clamd.out"))
	c.Cmd.Stdout, c.Cmd.Stderr = out, out
	if err := c.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("clamd: %w", err)
	}
	go c.Cmd.Wait()
	end := time.Now().Add(60 * time.Second)
	for {
		err := c.ping()
		if err == nil {
			return c, nil
		}
		if time.Now().After(end) {
			c.Stop()
			return nil, fmt.Errorf("clamd did not answer: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Clamd) ping() error {
	conn, err := net.Dial("unix", c.Sock)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	conn.Write([]byte("zPING\x00"))
	r, err := bufio.NewReader(conn).ReadString(0)
	if r != "PONG\x00" {
		return fmt.Errorf("clamd PING: %q %v", r, err)
	}
	return nil
}

// Stop kills clamd's process group.
func (c *Clamd) Stop() {
	if c.Cmd != nil && c.Cmd.Process != nil {
		syscall.Kill(-c.Cmd.Process.Pid, syscall.SIGKILL)
		c.Cmd.Process.Kill()
	}
}
