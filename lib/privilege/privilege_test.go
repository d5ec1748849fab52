package privilege

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A thread that kept root's groups (the one setgroups did not run on)
// is told apart from one that dropped everything.
func TestStatusDiffers(t *testing.T) {
	const kept = "Name:\tgw-smtpd\nUid:\t1001\t1001\t1001\t1001\nGid:\t1001\t1001\t1001\t1001\nGroups:\t0 42 \n"
	const dropped = "Name:\tgw-smtpd\nUid:\t1001\t1001\t1001\t1001\nGid:\t1001\t1001\t1001\t1001\nGroups:\t1001 \n"
	const rootUID = "Uid:\t0\t1001\t0\t1001\nGid:\t1001\t1001\t1001\t1001\nGroups:\n"
	for _, c := range []struct{ text, want string }{
		{kept, "supplementary groups [0 42]"},
		{dropped, ""},
		{rootUID, "uids [0 1001 0 1001]"},
	} {
		path := filepath.Join(t.TempDir(), "status")
		os.WriteFile(path, []byte(c.text), 0o600)
		st, err := ReadStatus(path)
		if err != nil {
			t.Fatal(err)
		}
		got := st.Differs(1001, 1001)
		if (c.want == "") != (got == "") || !strings.HasPrefix(got, c.want) {
			t.Errorf("%q: Differs = %q, want %q…", c.text, got, c.want)
		}
	}
}

func TestReadStatusRefusesGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status")
	os.WriteFile(path, []byte("Uid:\t1 2 x 4\nGid:\t1 1 1 1\n"), 0o600)
	if _, err := ReadStatus(path); err == nil {
		t.Error("a non-numeric uid was read")
	}
	os.WriteFile(path, []byte("Name:\tx\n"), 0o600)
	if _, err := ReadStatus(path); err == nil {
		t.Error("a status without Uid: was read")
	}
}

// The running test process: its threads agree with each other.
func TestCheckThreadsSelf(t *testing.T) {
	if err := CheckThreads(os.Getuid(), os.Getgid()); err != nil && !strings.Contains(err.Error(), "supplementary") {
		t.Fatal(err)
	}
}

// FuzzReadStatus: whatever a status file holds, ReadStatus returns an
// error or four uids and four gids, and Differs never passes a thread
// whose ids it did not read.
func FuzzReadStatus(f *testing.F) {
	f.Add([]byte("Name:\tgw-smtpd\nUid:\t1001\t1001\t1001\t1001\nGid:\t1001\t1001\t1001\t1001\nGroups:\t0 42 \n"))
	f.Add([]byte("Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "status")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := ReadStatus(path)
		if err != nil {
			return
		}
		if len(st.Uid) != 4 || len(st.Gid) != 4 {
			t.Fatalf("read %v %v without an error", st.Uid, st.Gid)
		}
		if st.Differs(st.Uid[0], st.Gid[0]) == "" {
			for _, id := range append(append(st.Uid[1:], st.Gid[1:]...), st.Groups...) {
				if id != st.Uid[0] && id != st.Gid[0] {
					t.Fatalf("%+v passes as %d/%d", st, st.Uid[0], st.Gid[0])
				}
			}
		}
	})
}
