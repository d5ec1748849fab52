package instdir

import "testing"

func TestChooseRefusesNamesThatLeaveTheRoot(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "../etc", "a/b", "Main", "-x", "_x", "a b", "a.b", "a\x00", "\xc3\xa9", "x123456789012345678901234567890123"} {
		if _, err := Choose("/var/gw", bad); err == nil {
			t.Errorf("Choose(%q) took a bad name", bad)
		}
	}
	for _, good := range []string{"main", "0", "a-b_c", "x-", "x1234567890123456789012345678901"} {
		if _, err := Choose("/var/gw", good); err != nil {
			t.Errorf("Choose(%q): %v", good, err)
		}
	}
}

func TestChoosePaths(t *testing.T) {
	d, err := Choose("", "main")
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		d.Control():       "/var/gw/main/control",
		d.Queue():         "/var/gw/main/queue",
		d.Quarantine():    "/var/gw/main/quarantine",
		d.InjectSocket():  "/var/gw/main/inject/inject.sock",
		d.ACL("tcp.smtp"): "/var/gw/main/acl/tcp.smtp.db",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}
