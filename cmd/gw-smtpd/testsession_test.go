package main

import (
	"path/filepath"
	"testing"

	"gw/lib/instance"
)

// TestResolveInstance: the session test takes an instance's face as its
// service runs it (control directory, rules database, listener address,
// gw-scan as QMAILQUEUE); options given explicitly win; a face that is
// not an SMTP listener is an error.
func TestResolveInstance(t *testing.T) {
	root := t.TempDir()
	in, err := instance.Create(root, "main", instance.Options{Me: "gw.test", SMTP: []string{"127.0.0.1:2525", "127.0.0.1:2587"},
		QMTP: []string{"127.0.0.1:2628"}, Scan: true, BinDir: "/opt/gw/bin"})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := in.Listeners()
	if err != nil {
		t.Fatal(err)
	}
	var second, qmtp string
	for _, l := range ls {
		switch {
		case l.Proto == "smtp" && l.Addr == "127.0.0.1:2587":
			second = l.Face
		case l.Proto == "qmtp":
			qmtp = l.Face
		}
	}

	c := &config{}
	tst := &sessionTest{root: root, instance: "main"}
	if err := tst.resolve(c); err != nil {
		t.Fatal(err)
	}
	if c.ControlDir != in.Control() || c.ACL != filepath.Join(in.Dir(), "acl", "tcp.smtp.db") || tst.local.String() != "127.0.0.1:2525" || !tst.scanned {
		t.Errorf("first face: control %q, acl %q, local %v, scanned %v", c.ControlDir, c.ACL, tst.local, tst.scanned)
	}
	if got := tst.getenv("QMAILQUEUE"); got != "/opt/gw/bin/gw-scan" {
		t.Errorf("the face's QMAILQUEUE = %q", got)
	}

	c = &config{}
	c.ControlDir, c.ACL = "/elsewhere/control", "/elsewhere/tcp.db"
	tst = &sessionTest{root: root, instance: "main", face: second, controlSet: true, aclSet: true}
	if err := tst.resolve(c); err != nil {
		t.Fatal(err)
	}
	if c.ControlDir != "/elsewhere/control" || c.ACL != "/elsewhere/tcp.db" || tst.local.String() != "127.0.0.1:2587" {
		t.Errorf("face %s with options: control %q, acl %q, local %v", second, c.ControlDir, c.ACL, tst.local)
	}

	for _, bad := range []*sessionTest{
		{root: root, instance: "main", face: qmtp},
		{root: root, instance: "main", face: "nosuch"},
		{root: root, instance: "absent"},
		{root: root, face: "smtpd"},
	} {
		if err := bad.resolve(&config{}); err == nil {
			t.Errorf("instance %q face %q: no error", bad.instance, bad.face)
		}
	}
}

func TestArgValue(t *testing.T) {
	argv := []string{"/bin/gw-smtpd", "--listen", "127.0.0.1:25", "--acl", "/i/acl/tcp.smtp.db", "--greylist=state/greylist.db", "--acl"}
	if v := argValue(argv, "acl"); v != "/i/acl/tcp.smtp.db" {
		t.Errorf("acl = %q", v)
	}
	if v := argValue(argv, "greylist"); v != "state/greylist.db" {
		t.Errorf("greylist = %q", v)
	}
	if v := argValue(argv, "rates"); v != "" {
		t.Errorf("rates = %q", v)
	}
	if p := absUnder("/i", "state/greylist.db"); p != "/i/state/greylist.db" {
		t.Errorf("absUnder = %q", p)
	}
}
