package instdir

import "testing"

func TestChooseRefusesNamesThatLeaveTheRoot(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "../etc", "a/b", "Main", "-x", "a b"} {
		if _, err := Choose("/var/gw", bad); err == nil {
			t.Errorf("Choose(%q) took a bad name", bad)
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
