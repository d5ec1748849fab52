package dsn

import (
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestXtext(t *testing.T) {
	for _, c := range []struct{ enc, dec string }{
		{"abc", "abc"},
		{"a+2Bb+3Dc", "a+b=c"},
		{"a+20b", "a b"},
		{"+2b+3d", "+="}, // lower-case digits are taken
		{"", ""},
	} {
		got, err := DecodeXtext(c.enc)
		if err != nil || got != c.dec {
			t.Errorf("DecodeXtext(%q) = %q, %v; want %q", c.enc, got, err, c.dec)
		}
	}
	for _, bad := range []string{"a+", "a+2", "a+G0", "a=b", "a b", "a\x7fb", "\xc3\xa9"} {
		if _, err := DecodeXtext(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("DecodeXtext(%q): %v, want a syntax error", bad, err)
		}
	}
	if got := EncodeXtext("a+b=c d\x01é"); got != "a+2Bb+3Dc+20d+01+C3+A9" {
		t.Errorf("EncodeXtext = %q", got)
	}
}

func TestNotify(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Notify
		out  string
	}{
		{"NEVER", NotifyNever, "NEVER"},
		{"never", NotifyNever, "NEVER"},
		{"SUCCESS", NotifySuccess, "SUCCESS"},
		{"delay,Failure,SUCCESS", NotifySuccess | NotifyFailure | NotifyDelay, "SUCCESS,FAILURE,DELAY"},
	} {
		n, err := ParseNotify(c.in)
		if err != nil || n != c.want || n.String() != c.out {
			t.Errorf("ParseNotify(%q) = %v (%s), %v", c.in, n, n, err)
		}
	}
	for _, bad := range []string{"", "NEVER,SUCCESS", "SUCCESS,SUCCESS", "SUCCESS,", "SOMETIMES", "SUCCESS FAILURE"} {
		if _, err := ParseNotify(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseNotify(%q): %v, want a syntax error", bad, err)
		}
	}
}

func TestWants(t *testing.T) {
	for _, c := range []struct {
		n                        Notify
		success, failure, delays bool
	}{
		{0, false, true, true},
		{NotifyNever, false, false, false},
		{NotifySuccess, true, false, false},
		{NotifyFailure, false, true, false},
		{NotifyFailure | NotifyDelay, false, true, true},
	} {
		if c.n.Wants(NotifySuccess) != c.success || c.n.Wants(NotifyFailure) != c.failure || c.n.Wants(NotifyDelay) != c.delays {
			t.Errorf("NOTIFY=%s: Wants gives %v %v %v", c.n, c.n.Wants(NotifySuccess), c.n.Wants(NotifyFailure), c.n.Wants(NotifyDelay))
		}
	}
}

func TestEnvID(t *testing.T) {
	if id, err := ParseEnvID("QQ314159+2Bx"); err != nil || id != "QQ314159+x" {
		t.Errorf("ParseEnvID = %q, %v", id, err)
	}
	for _, bad := range []string{"", strings.Repeat("a", MaxEnvID+1), "a+0Ab", "a+FFb", "a b"} {
		if _, err := ParseEnvID(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseEnvID(%q): %v, want a syntax error", bad, err)
		}
	}
	if _, err := ParseEnvID(strings.Repeat("a", MaxEnvID)); err != nil {
		t.Errorf("ENVID of %d characters: %v", MaxEnvID, err)
	}
}

func TestORcpt(t *testing.T) {
	for _, c := range []struct{ in, typ, addr string }{
		{"rfc822;bob@example.org", "rfc822", "bob@example.org"},
		{"RFC822;b+2Bo+3Db@example.org", "RFC822", "b+o=b@example.org"},
		{"x400;/G+3DBob/S+3DSmith/", "x400", "/G=Bob/S=Smith/"},
		{`utf-8;j\x{F6}rg@example.org`, "utf-8", "jörg@example.org"},
		{"utf-8;j\xc3\xb6rg@example.org", "utf-8", "jörg@example.org"},
		{`UTF-8;a\x{5C}b@example.org`, "UTF-8", `a\b@example.org`},
	} {
		typ, addr, err := ParseORcpt(c.in)
		if err != nil || typ != c.typ || addr != c.addr {
			t.Errorf("ParseORcpt(%q) = %q, %q, %v", c.in, typ, addr, err)
		}
	}
	for _, bad := range []string{
		"bob@example.org", ";bob@example.org", "rfc 822;bob@example.org", "rfc822;", "rfc822;b+0Dob",
		"rfc822;j\xc3\xb6rg@example.org", `utf-8;a\x{}b`, `utf-8;a\x{110000}b`, `utf-8;a\x{0A}b`, "utf-8;a\xffb",
		"rfc822;" + strings.Repeat("a", MaxORcpt),
	} {
		if _, _, err := ParseORcpt(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseORcpt(%q): %v, want a syntax error", bad, err)
		}
	}
}

func TestParams(t *testing.T) {
	var m Mail
	for _, kv := range [][2]string{{"ret", "hdrs"}, {"ENVID", "id+2B1"}} {
		if ok, err := m.Param(kv[0], kv[1], true); !ok || err != nil {
			t.Fatalf("Param(%s=%s) = %v, %v", kv[0], kv[1], ok, err)
		}
	}
	if ok, _ := m.Param("SIZE", "10", true); ok {
		t.Error("SIZE taken as a DSN parameter")
	}
	if _, err := m.Param("RET", "FULL", true); err == nil {
		t.Error("a second RET was taken")
	}
	if m.String() != "RET=HDRS ENVID=id+2B1" {
		t.Errorf("Mail.String = %q", m.String())
	}
	var r Rcpt
	if _, err := r.Param("NOTIFY", "", false); err == nil {
		t.Error("NOTIFY without a value was taken")
	}
	r = Rcpt{}
	r.Param("notify", "failure,success", true)
	r.Param("orcpt", "rfc822;a+20b@example.org", true)
	if r.String() != "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+20b@example.org" {
		t.Errorf("Rcpt.String = %q", r.String())
	}
}

func TestField(t *testing.T) {
	for _, c := range []struct {
		r    Rcpt
		want string
	}{
		{Rcpt{Notify: NotifyNever}, ""},
		{Rcpt{ORcptType: "rfc822", ORcpt: "a+b@example.org"}, "rfc822;a+b@example.org"},
		{Rcpt{ORcptType: "utf-8", ORcpt: "jörg@example.org"}, `utf-8;j\x{F6}rg@example.org`},
	} {
		if got := c.r.Field(); got != c.want {
			t.Errorf("Field() = %q, want %q", got, c.want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range []Mail{{Ret: RetFull}, {EnvID: "x y+z=\\"}, {Ret: RetHdrs, EnvID: "QQ1"}} {
		got, err := ParseMail(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMail(%q) = %+v, %v; want %+v", m.String(), got, err, m)
		}
	}
	for _, r := range []Rcpt{
		{Notify: NotifyNever},
		{Notify: NotifyDelay | NotifyFailure, ORcptType: "rfc822", ORcpt: "a b+c@example.org"},
		{ORcptType: "utf-8", ORcpt: `jörg\x@example.org`},
	} {
		got, err := ParseRcpt(r.String())
		if err != nil || got != r {
			t.Errorf("ParseRcpt(%q) = %+v, %v; want %+v", r.String(), got, err, r)
		}
	}
	for _, bad := range []string{"", "SIZE=10", "NOTIFY=NEVER  ORCPT=rfc822;a", "NOTIFY=NEVER NOTIFY=NEVER"} {
		if _, err := ParseRcpt(bad); err == nil {
			t.Errorf("ParseRcpt(%q) took it", bad)
		}
	}
}

// FuzzParams: whatever a client or a stored envelope holds, a parse that
// succeeds writes a canonical form that parses to the same values and
// writes the same again, printable ASCII with no NUL, CR or LF.
func FuzzParams(f *testing.F) {
	for _, s := range []string{
		"NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.org",
		"NOTIFY=NEVER", `ORCPT=utf-8;j\x{F6}rg@example.org`, "RET=HDRS ENVID=QQ+2B1",
		"RET=FULL", "ENVID=a+20b", "ORCPT=x400;/G+3Da/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := ParseRcpt(s); err == nil {
			out := r.String()
			again, err := ParseRcpt(out)
			if err != nil || again != r || again.String() != out || !printable(out) {
				t.Fatalf("%q: wrote %q, read %+v, %v", s, out, again, err)
			}
		}
		if m, err := ParseMail(s); err == nil {
			out := m.String()
			again, err := ParseMail(out)
			if err != nil || again != m || again.String() != out || !printable(out) {
				t.Fatalf("%q: wrote %q, read %+v, %v", s, out, again, err)
			}
		}
		DecodeXtext(s)
	})
}

// TestGoSMTPOptions: what go-smtp's client is given says the same as
// the parameters; an ORCPT type it cannot write is left out.
func TestGoSMTPOptions(t *testing.T) {
	m := Mail{Ret: RetHdrs, EnvID: "a+b"}
	var mo smtp.MailOptions
	m.MailOptions(&mo)
	if mo.Return != smtp.DSNReturnHeaders || mo.EnvelopeID != "a+b" {
		t.Errorf("MailOptions = %+v", mo)
	}
	r := Rcpt{Notify: NotifySuccess | NotifyDelay, ORcptType: "UTF-8", ORcpt: "jörg@example.org"}
	ro := r.RcptOptions()
	if ro == nil || len(ro.Notify) != 2 || ro.Notify[0] != "SUCCESS" || ro.Notify[1] != "DELAY" ||
		ro.OriginalRecipientType != smtp.DSNAddressTypeUTF8 || ro.OriginalRecipient != "jörg@example.org" {
		t.Errorf("RcptOptions = %+v", ro)
	}
	if ro := (Rcpt{ORcptType: "x400", ORcpt: "/G=a/"}).RcptOptions(); ro != nil {
		t.Errorf("an x400 ORCPT alone gave go-smtp %+v", ro)
	}
}
