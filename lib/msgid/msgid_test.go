package msgid

import (
	"strings"
	"testing"
)

func find(msg string, chunk int) string {
	var f Finder
	for len(msg) > 0 {
		n := min(chunk, len(msg))
		f.Write([]byte(msg[:n]))
		msg = msg[n:]
	}
	return f.ID()
}

func TestFinder(t *testing.T) {
	for _, c := range []struct{ name, msg, want string }{
		{"plain", "From: a@b\r\nMessage-ID: <x.1@example.net>\r\n\r\nbody\r\n", "<x.1@example.net>"},
		{"case and last field", "message-id:<y@z>\n\nMessage-ID: <body@no>\n", "<y@z>"},
		{"folded", "Message-Id:\r\n <f@example.net>\r\nSubject: s\r\n\r\n", "<f@example.net>"},
		{"comment around it", "Message-ID: (c) <c@d> (e)\n\n", "<c@d>"},
		{"first of two", "Message-ID: <1@a>\nMessage-ID: <2@a>\n\n", "<1@a>"},
		{"none", "Subject: x\n\nMessage-ID: <in@body>\n", ""},
		{"in the body only", "\nMessage-ID: <in@body>\n", ""},
		{"no brackets, blanks made one token", "Message-ID: a b\"c\n\n", "a?b?c"},
		{"unprintable", "Message-ID: <a\x01\xff@b>\n\n", "<a??@b>"},
		{"header with no body", "Message-ID: <e@f>\n", "<e@f>"},
		{"similar name", "Message-IDs: <no@no>\nX-Message-ID: <no@no>\n\n", ""},
	} {
		for _, chunk := range []int{1, 3, 4096} {
			if got := find(c.msg, chunk); got != c.want {
				t.Errorf("%s (chunks of %d): %q, want %q", c.name, chunk, got, c.want)
			}
		}
	}
}

func TestFinderBounded(t *testing.T) {
	long := "<" + strings.Repeat("a", 5000) + "@b>"
	got := find("Message-ID: "+long+"\n\n", 512)
	if len(got) != MaxLen || !strings.HasPrefix(got, "<aaa") {
		t.Errorf("a 5000-byte id gave %d bytes: %.20q", len(got), got)
	}
}

// FuzzFinder: whatever the header, the id is one log token of at most
// MaxLen printable bytes, and the same however the message is split.
func FuzzFinder(f *testing.F) {
	f.Add("Message-ID: <x@y>\r\n\r\nbody", 3)
	f.Add("message-id:\n\t<folded@y>\n\n", 1)
	f.Fuzz(func(t *testing.T, msg string, chunk int) {
		if chunk < 1 {
			chunk = 1
		}
		got := find(msg, chunk)
		if whole := find(msg, len(msg)+1); got != whole {
			t.Fatalf("split in %d: %q, whole: %q", chunk, got, whole)
		}
		if len(got) > MaxLen || strings.ContainsAny(got, " \t\r\n\"\\") {
			t.Fatalf("not one bounded token: %q", got)
		}
		for i := 0; i < len(got); i++ {
			if got[i] < 0x21 || got[i] > 0x7e {
				t.Fatalf("unprintable in %q", got)
			}
		}
	})
}
