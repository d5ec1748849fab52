package milter

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	list, err := Parse("# signing first\nopendkim unix:/run/opendkim/opendkim.sock\n\n" +
		"clamav inet:7357@127.0.0.1 timeout=30s default=accept\nrspamd inet6:11332@[::1] default=reject\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []Milter{
		{"opendkim", "unix", "/run/opendkim/opendkim.sock", DefaultTimeout, FailTempfail},
		{"clamav", "tcp", "127.0.0.1:7357", 30 * time.Second, FailAccept},
		{"rspamd", "tcp", "[::1]:11332", DefaultTimeout, FailReject},
	}
	if !reflect.DeepEqual(list, want) {
		t.Errorf("got %+v", list)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, c := range []struct{ text, err string }{
		{"opendkim\n", "line 1: want: name socket"},
		{"a unix:relative.sock\n", "line 1: socket \"unix:relative.sock\": a unix socket's path is absolute"},
		{"a inet:0@127.0.0.1\n", "want inet:port@host"},
		{"a inet:25\n", "want inet:port@host"},
		{"a tcp:127.0.0.1:25\n", "want unix:/path or inet:port@host"},
		{"a unix:/s timeout=0s\n", "timeout \"0s\""},
		{"a unix:/s default=discard\n", "default \"discard\""},
		{"a unix:/s color=red\n", "unknown option"},
		{"a unix:/s\n\na unix:/t\n", "line 3: milter \"a\" named twice"},
		{"a/b unix:/s\n", "bad name"},
	} {
		if _, err := Parse(c.text); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q: %v, want %q", c.text, err, c.err)
		}
	}
}

func TestSelect(t *testing.T) {
	list := []Milter{{Name: "a"}, {Name: "b"}}
	if got, _ := Select(list, "", false); len(got) != 2 {
		t.Errorf("no MILTERS: %v", got)
	}
	if got, _ := Select(list, "", true); len(got) != 0 {
		t.Errorf("MILTERS empty: %v", got)
	}
	if got, _ := Select(list, "b, a", true); !reflect.DeepEqual(got, []Milter{{Name: "b"}, {Name: "a"}}) {
		t.Errorf("MILTERS=b,a: %v", got)
	}
	if _, err := Select(list, "c", true); err == nil {
		t.Error("MILTERS naming an unknown milter: no error")
	}
}
