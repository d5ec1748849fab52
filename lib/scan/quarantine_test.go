package scan

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gw/lib/envelope"
)

// TestQuarantineOpensOnlyItsOwn: a message gw-scan held is shown; a link
// in the quarantine to a file elsewhere that reads as a held message (one
// to a stranger's recipients, say), and a hard link to it, are not: the
// sysadmin's release as root queues nothing the quarantine's user did
// not write itself.
func TestQuarantineOpensOnlyItsOwn(t *testing.T) {
	q := &QuarantineDir{Dir: t.TempDir()}
	env := envelope.Envelope{Sender: "a@example.org", Recipients: []string{"b@example.org"}}
	if err := q.Put("own", "virus", env, strings.NewReader("Subject: held\n\nx\n")); err != nil {
		t.Fatal(err)
	}
	h, r, err := q.Open("own")
	if err != nil || h.Reason != "virus" {
		t.Fatalf("own held message: %+v, %v", h, err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != "Subject: held\n\nx\n" {
		t.Errorf("own held message reads %q", b)
	}

	elsewhere := &QuarantineDir{Dir: t.TempDir()}
	if err := elsewhere.Put("secret", "x", envelope.Envelope{Sender: "", Recipients: []string{"thief@example.net"}},
		strings.NewReader("Subject: not the quarantine's\n\n")); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(elsewhere.Dir, "secret")
	os.Symlink(target, filepath.Join(q.Dir, "linked"))
	os.Link(target, filepath.Join(q.Dir, "hard"))
	for id, want := range map[string]string{"linked": "a symbolic link", "hard": "a hard link"} {
		if _, _, err := q.Open(id); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q): %v, want %q", id, err, want)
		}
	}
	if os.Geteuid() == 0 {
		p := filepath.Join(q.Dir, "foreign")
		os.WriteFile(p, []byte(quarantineMagic+"x\n"+string(env.Wire())), 0o640)
		os.Chown(p, 65534, 65534)
		if _, _, err := q.Open("foreign"); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Errorf("Open of a file of uid 65534: %v", err)
		}
	}
}
