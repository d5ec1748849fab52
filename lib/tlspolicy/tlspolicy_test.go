package tlspolicy

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseAndLookup(t *testing.T) {
	p, err := Parse(`# partners
partner.example   verify
.partner.example  secure match=.partner.example:mx.other.example
[smtp.office365.com]:587 secure match=smtp.office365.com
[relay.example]   encrypt
signed.example    dane-only
`, May)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		domain, relay string
		port          int
		dest          string
		level         Level
	}{
		{"partner.example", "", 25, "partner.example", Verify},
		{"PARTNER.example.", "", 25, "partner.example", Verify},
		{"a.b.partner.example", "", 25, ".partner.example", Secure},
		{"tenant.example", "smtp.office365.com", 587, "[smtp.office365.com]:587", Secure},
		{"tenant.example", "smtp.office365.com", 25, "", May}, // another port, another next hop
		{"x.example", "relay.example", 2525, "[relay.example]", Encrypt},
		{"partner.example", "relay.example", 25, "[relay.example]", Encrypt}, // the relay is the next hop
		{"signed.example", "", 25, "signed.example", DaneOnly},
		{"other.example", "", 25, "", May},
	} {
		e := p.Lookup(c.domain, c.relay, c.port)
		if e.Dest != c.dest || e.Level != c.level {
			t.Errorf("Lookup(%q, %q, %d) = %q %s, want %q %s", c.domain, c.relay, c.port, e.Dest, e.Level, c.dest, c.level)
		}
	}
	e := p.Lookup("x.partner.example", "", 25)
	if got := e.Names("x.partner.example", "mx1.partner.example"); !reflect.DeepEqual(got, []string{".partner.example", "mx.other.example"}) {
		t.Errorf("match names %q", got)
	}
	if got := p.Lookup("partner.example", "", 25).Names("partner.example", "MX1.partner.example"); !reflect.DeepEqual(got, []string{"mx1.partner.example"}) {
		t.Errorf("verify's default names %q, want the server's host name", got)
	}
	sec := &Entry{Level: Secure}
	if got := sec.Names("partner.example", "mx1.elsewhere"); !reflect.DeepEqual(got, []string{"partner.example", ".partner.example"}) {
		t.Errorf("secure's default names %q, want nexthop and dot-nexthop", got)
	}
}

func TestParseRefusesTheWholeFile(t *testing.T) {
	for _, c := range []struct{ text, err string }{
		{"a.example verify\nb.example sometimes\n", "line 2: unknown TLS level"},
		{"a.example\n", "want a destination and a level"},
		{"a.example may match=a.example\n", "match= applies to verify and secure"},
		{"a.example verify match=a..example\n", "is not a host name"},
		{"a.example verify cert=/x.pem\n", "cert= and key= go together"},
		{"a.example verify colour=blue\n", "unknown attribute"},
		{"[a.example]:99999 verify\n", "bad port"},
		{"[a.example verify\n", "want [host] or [host]:port"},
		{"a/b verify\n", "is not a domain"},
		{"a.example verify\nA.example. may\n", ""}, // trailing dot: not a domain
		{"a.example verify\nA.EXAMPLE may\n", "line 2: a.example is already on line 1"},
	} {
		_, err := Parse(c.text, May)
		if c.err == "" {
			if err == nil {
				t.Errorf("Parse(%q) took it", c.text)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("Parse(%q) = %v, want %q", c.text, err, c.err)
		}
	}
}

func TestLevels(t *testing.T) {
	for _, n := range levelNames {
		l, err := ParseLevel(n)
		if err != nil || l.String() != n {
			t.Errorf("ParseLevel(%q) = %v, %v", n, l, err)
		}
	}
	for l, want := range map[Level]bool{None: false, May: false, Dane: false, Encrypt: true, DaneOnly: true, Verify: true, Secure: true} {
		if l.Required() != want {
			t.Errorf("%s.Required() = %v", l, !want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	w := func(name, text string) { os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644) }
	p, err := Load(dir, false)
	if err != nil || p.Default != None || p.Roots != nil {
		t.Fatalf("no files, tlsremote 0: %v %v", p, err)
	}
	w("tlslevel", "verify\n")
	if p, err = Load(dir, true); err != nil || p.Default != Verify {
		t.Fatalf("tlslevel verify: %v %v", p, err)
	}
	w("tlscafile", "ca.pem\n")
	if _, err := Load(dir, true); err == nil || !strings.Contains(err.Error(), "control/tlscafile") {
		t.Errorf("a missing CA file: %v", err)
	}
	w("ca.pem", "not a certificate\n")
	if _, err := Load(dir, true); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("a CA file without certificates: %v", err)
	}
	os.Remove(filepath.Join(dir, "tlscafile"))
	w("tlspolicy", "a.example secure cert=c.pem key=c.key\n")
	if _, err := Load(dir, true); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a missing client certificate: %v", err)
	}
	w("tlslevel", "paranoid\n")
	if _, err := Load(dir, true); err == nil || !strings.Contains(err.Error(), "control/tlslevel") {
		t.Errorf("a bad tlslevel: %v", err)
	}
}

// FuzzParse: no text makes Parse panic, and what it takes it takes whole:
// every entry is found again by its own destination.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"a.example verify\n", ".b.example secure match=.b.example:hostname\n", "[h.example]:587 encrypt cert=c key=k\n", "# c\n\nx dane\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		p, err := Parse(text, May)
		if err != nil {
			return
		}
		for _, e := range p.Entries() {
			if _, err := ParseLevel(e.Level.String()); err != nil {
				t.Fatalf("entry %q has level %v", e.Dest, e.Level)
			}
			if e.Dest == "" || strings.ContainsAny(e.Dest, " \t\n") {
				t.Fatalf("destination %q", e.Dest)
			}
		}
	})
}

// TestLookupByALabels: an entry and a looked-up domain compare by
// A-labels, as routes do, so a secure entry for an IDN domain holds for
// mail to either spelling of the address, and a certificate is asked for
// the name it can hold.
func TestLookupByALabels(t *testing.T) {
	p, err := Parse("xn--mnchen-3ya.de secure\n.bücher.example encrypt\n[relais.müller.example]:2525 verify\n", May)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		domain, relay string
		want          Level
	}{
		{"münchen.de", "", Secure},
		{"MÜNCHEN.de", "", Secure},
		{"xn--mnchen-3ya.de", "", Secure},
		{"mx.bücher.example", "", Encrypt},
		{"mx.xn--bcher-kva.example", "", Encrypt},
		{"example.org", "relais.xn--mller-kva.example", Verify},
		{"example.org", "relais.müller.example", Verify},
		{"other.de", "", May},
	} {
		if e := p.Lookup(c.domain, c.relay, 2525); e.Level != c.want {
			t.Errorf("Lookup(%q, %q) = %s, want %s", c.domain, c.relay, e.Level, c.want)
		}
	}
	e := p.Lookup("münchen.de", "", 25)
	if got := strings.Join(e.Names("münchen.de", "mx.münchen.de"), " "); got != "xn--mnchen-3ya.de .xn--mnchen-3ya.de" {
		t.Errorf("names to match: %s", got)
	}
}
