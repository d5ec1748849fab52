// Package amavistest starts a real amavisd-new for the bench and the
// end-to-end tests: a private instance in the foreground, its own
// configuration file and directories, listening on a loopback port and
// handing what it passes to a next hop over SMTP. It scans with the clamd
// it is given (through its unix socket) and, when asked, with
// SpamAssassin loaded in its own processes; no network tests, no
// notifications, no SQL, no syslog.
package amavistest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Options says how the instance scans and where it sends.
type Options struct {
	Addr         string // its listening address, 127.0.0.1:port
	NextHop      string // where passed mail goes, 127.0.0.1:port (Postfix's reinjection smtpd)
	ClamdSock    string // clamd's unix socket; amavisd's user must reach it
	SpamAssassin bool   // spam checks by SpamAssassin in-process; off: virus checks only
	Servers      int    // child processes (0: 2)
}

// Amavis is a running amavisd-new.
type Amavis struct {
	Addr string
	Dir  string
	Cmd  *exec.Cmd
}

// Start writes a configuration under dir (which amavisd's user, amavis,
// must be able to reach: not under a 0700 directory) and runs amavisd in
// the foreground; it returns once the port answers, or amavisd's log.
func Start(dir string, o Options) (*Amavis, error) {
	if _, err := exec.LookPath("amavisd"); err != nil {
		return nil, fmt.Errorf("amavisd-new is not installed: %w", err)
	}
	u, err := user.Lookup("amavis")
	if err != nil {
		return nil, fmt.Errorf("amavisd-new's user: %w", err)
	}
	var uid, gid int
	fmt.Sscan(u.Uid, &uid)
	fmt.Sscan(u.Gid, &gid)
	// amavisd drops to its user at once: everything it writes is its own.
	for _, d := range []string{"home", "tmp", "db", "var", "quarantine"} {
		p := filepath.Join(dir, d)
		if err := os.MkdirAll(p, 0o750); err != nil {
			return nil, err
		}
		if err := os.Chown(p, uid, gid); err != nil {
			return nil, err
		}
	}
	os.Chmod(dir, 0o755)
	if o.Servers == 0 {
		o.Servers = 2
	}
	_, port, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, err
	}
	host, hport, err := net.SplitHostPort(o.NextHop)
	if err != nil {
		return nil, err
	}
	bypassSpam := "1"
	if o.SpamAssassin {
		bypassSpam = "0"
	}
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }
	conf := strings.Join([]string{
		"use strict;",
		"$daemon_user = 'amavis'; $daemon_group = 'amavis';",
		"$MYHOME = " + q(filepath.Join(dir, "home")) + ";",
		"$TEMPBASE = " + q(filepath.Join(dir, "tmp")) + ";",
		"$db_home = " + q(filepath.Join(dir, "db")) + ";",
		"$helpers_home = " + q(filepath.Join(dir, "var")) + ";",
		"$pid_file = " + q(filepath.Join(dir, "var", "amavisd.pid")) + ";",
		"$lock_file = " + q(filepath.Join(dir, "var", "amavisd.lock")) + ";",
		"$QUARANTINEDIR = " + q(filepath.Join(dir, "quarantine")) + ";",
		"$LOGFILE = " + q(filepath.Join(dir, "var", "amavisd.log")) + ";",
		"$DO_SYSLOG = 0; $log_level = 0;",
		"$myhostname = 'amavis.bench.example'; $mydomain = 'bench.example';",
		"@local_domains_maps = (['.example.net']);",
		fmt.Sprintf("$max_servers = %d; $child_timeout = 120;", o.Servers),
		"$inet_socket_bind = '127.0.0.1';",
		"$inet_socket_port = " + port + ";",
		"@inet_acl = qw(127.0.0.1);",
		"$unix_socketname = undef;",
		// No Berkeley DB cache or nanny, no ZeroMQ monitoring: nothing
		// shared beyond the instance's own files.
		"$enable_db = 0; $enable_zmq = 0; $nanny_details_level = 0;",
		"$notify_method = 'smtp:[" + host + "]:" + hport + "';",
		"$forward_method = 'smtp:[" + host + "]:" + hport + "';",
		// A virus is refused to the MTA in front (which bounces or, here,
		// tells its client) and kept in the quarantine; spam is tagged.
		"$final_virus_destiny = D_REJECT;",
		"$final_banned_destiny = D_PASS; $final_bad_header_destiny = D_PASS;",
		"$final_spam_destiny = D_PASS;",
		"$virus_quarantine_method = 'local:virus-%m';",
		"$virus_admin = undef; $spam_admin = undef;",
		"$warnvirussender = 0; $warnbannedsender = 0; $warnbadhsender = 0;",
		"$enable_dkim_verification = 0; $enable_dkim_signing = 0;",
		"@bypass_virus_checks_maps = (0);",
		"@bypass_spam_checks_maps = (" + bypassSpam + ");",
		"@bypass_banned_checks_maps = (1); @bypass_header_checks_maps = (1);",
		// The spam figures are SpamAssassin's rules alone, as spamd runs
		// them in the bench: no DNS, no DCC, Razor or Pyzor.
		"$sa_local_tests_only = 1; $sa_tag_level_deflt = -999; $sa_kill_level_deflt = 6.31;",
		"@av_scanners = (['ClamAV-clamd', \\&ask_daemon, [\"CONTSCAN {}\\n\", " + q(o.ClamdSock) + "],",
		"  qr/\\bOK$/m, qr/\\bFOUND$/m, qr/^.*?: (?!Infected Archive)(.*) FOUND$/m ]);",
		"@av_scanners_backup = ();",
		"1;",
	}, "\n") + "\n"
	cf := filepath.Join(dir, "amavisd.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	a := &Amavis{Addr: o.Addr, Dir: dir}
	a.Cmd = exec.Command("amavisd", "-c", cf, "foreground")
	a.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, _ := os.Create(filepath.Join(dir, "amavisd.out"))
	a.Cmd.Stdout, a.Cmd.Stderr = out, out
	if err := a.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("amavisd: %w", err)
	}
	exited := make(chan struct{})
	go func() { a.Cmd.Wait(); close(exited) }()
	// SpamAssassin compiles its rules before the port opens: give it time.
	end := time.Now().Add(120 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", o.Addr, time.Second)
		if err == nil {
			c.Close()
			return a, nil
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("amavisd exited: %s", a.log())
		default:
		}
		if time.Now().After(end) {
			a.Stop()
			return nil, fmt.Errorf("amavisd did not listen on %s: %s", o.Addr, a.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (a *Amavis) log() string {
	var b []byte
	for _, f := range []string{"amavisd.out", "var/amavisd.log"} {
		x, _ := os.ReadFile(filepath.Join(a.Dir, f))
		b = append(b, x...)
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// Stop ends amavisd and its children (its process group).
func (a *Amavis) Stop() {
	syscall.Kill(-a.Cmd.Process.Pid, syscall.SIGTERM)
	time.Sleep(500 * time.Millisecond)
	syscall.Kill(-a.Cmd.Process.Pid, syscall.SIGKILL)
}
