package envelope

import (
	"bufio"
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"gw/lib/dsn"
)

func TestRead(t *testing.T) {
	long := strings.Repeat("a", MaxAddress+1)
	cases := []struct {
		name string
		wire string
		want Envelope
		code int // 0: no error
	}{
		{"two recipients", "Fa@example.org\x00Tb@example.net\x00Tc@example.net\x00\x00",
			Envelope{Sender: "a@example.org", Recipients: []string{"b@example.net", "c@example.net"}}, 0},
		{"null sender", "F\x00Tpostmaster@example.net\x00\x00", Envelope{Sender: "", Recipients: []string{"postmaster@example.net"}}, 0},
		{"no recipients", "Fa@b\x00\x00", Envelope{Sender: "a@b", Recipients: nil}, 0},
		{"double bounce sender", "F#@[]\x00Tx@y\x00\x00", Envelope{Sender: "#@[]", Recipients: []string{"x@y"}}, 0},
		{"empty input", "", Envelope{}, 54},
		{"no final NUL", "Fa@b\x00Tc@d\x00", Envelope{}, 54},
		{"cut inside address", "Fa@b\x00Tc@", Envelope{}, 54},
		{"not F first", "Ta@b\x00\x00", Envelope{}, 91},
		{"empty first item", "\x00", Envelope{}, 91},
		{"recipient not T", "Fa@b\x00Xc@d\x00\x00", Envelope{}, 91},
		{"CR in recipient", "Fa@b\x00Tc\r@d\x00\x00", Envelope{}, 12},
		{"LF in sender", "Fa\n@b\x00Tc@d\x00\x00", Envelope{}, 12},
		{"ESC in recipient", "Fa@b\x00Tc\x1b[2J@d\x00\x00", Envelope{}, 12},
		{"parameters in the sender's domain", "Fs@gw.test> SIZE=1\x00Tc@d\x00\x00", Envelope{}, 12},
		{"recipient without domain", "Fa@b\x00Troot\x00\x00", Envelope{}, 12},
		{"empty recipient", "Fa@b\x00T\x00\x00", Envelope{}, 12},
		{"'>' in a local part is written quoted", "Fa@b\x00Tv@victim.test> NOTIFY=NEVER@gw.test\x00\x00",
			Envelope{Sender: "a@b", Recipients: []string{"v@victim.test> NOTIFY=NEVER@gw.test"}}, 0},
		{"long sender", "F" + long + "\x00\x00", Envelope{}, 11},
		{"long recipient", "Fa@b\x00T" + long + "\x00\x00", Envelope{}, 11},
		{"long domain", "Fa@" + strings.Repeat("d", 256) + "\x00\x00", Envelope{}, 11},
		{"longest address", "F" + long[3:] + "@b\x00\x00", Envelope{Sender: long[3:] + "@b"}, 0},
		{"DSN for the message and the second recipient",
			"Fa@b\x00DRET=HDRS ENVID=QQ+2B1\x00Tc@d\x00Te@f\x00NNOTIFY=SUCCESS,DELAY ORCPT=rfc822;e@f\x00\x00",
			Envelope{Sender: "a@b", Recipients: []string{"c@d", "e@f"}, DSN: dsn.Mail{Ret: dsn.RetHdrs, EnvID: "QQ+1"},
				RcptDSN: []dsn.Rcpt{{}, {Notify: dsn.NotifySuccess | dsn.NotifyDelay, ORcptType: "rfc822", ORcpt: "e@f"}}}, 0},
		{"NOTIFY=NEVER for the first recipient", "Fa@b\x00Tc@d\x00NNOTIFY=NEVER\x00Te@f\x00\x00",
			Envelope{Sender: "a@b", Recipients: []string{"c@d", "e@f"}, RcptDSN: []dsn.Rcpt{{Notify: dsn.NotifyNever}}}, 0},
		{"D after a recipient", "Fa@b\x00Tc@d\x00DRET=FULL\x00\x00", Envelope{}, 91},
		{"N after the sender", "Fa@b\x00NNOTIFY=NEVER\x00Tc@d\x00\x00", Envelope{}, 91},
		{"N twice", "Fa@b\x00Tc@d\x00NNOTIFY=NEVER\x00NNOTIFY=NEVER\x00\x00", Envelope{}, 91},
		{"D twice", "Fa@b\x00DRET=FULL\x00DRET=FULL\x00\x00", Envelope{}, 91},
		{"empty N", "Fa@b\x00Tc@d\x00N\x00\x00", Envelope{}, 91},
		{"bad NOTIFY", "Fa@b\x00Tc@d\x00NNOTIFY=NEVER,SUCCESS\x00\x00", Envelope{}, 91},
		{"SIZE in a D item", "Fa@b\x00DSIZE=10\x00\x00", Envelope{}, 91},
		{"control byte in ENVID", "Fa@b\x00DENVID=a+0Ab\x00\x00", Envelope{}, 91},
		{"unknown item", "Fa@b\x00Tc@d\x00Xsomething\x00\x00", Envelope{}, 91},
		{"REQUIRETLS after the sender", "Fa@b\x00R\x00Tc@d\x00\x00",
			Envelope{Sender: "a@b", Recipients: []string{"c@d"}, RequireTLS: true}, 0},
		{"REQUIRETLS after the DSN item", "Fa@b\x00DRET=FULL\x00R\x00Tc@d\x00\x00",
			Envelope{Sender: "a@b", Recipients: []string{"c@d"}, DSN: dsn.Mail{Ret: dsn.RetFull}, RequireTLS: true}, 0},
		{"REQUIRETLS before the DSN item", "Fa@b\x00R\x00DRET=FULL\x00Tc@d\x00\x00", Envelope{}, 91},
		{"REQUIRETLS twice", "Fa@b\x00R\x00R\x00Tc@d\x00\x00", Envelope{}, 91},
		{"REQUIRETLS after a recipient", "Fa@b\x00Tc@d\x00R\x00\x00", Envelope{}, 91},
		{"REQUIRETLS with a value", "Fa@b\x00Ryes\x00Tc@d\x00\x00", Envelope{}, 91},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Read(bufio.NewReader(strings.NewReader(c.wire)))
			if c.code != 0 {
				var e *Error
				if !errors.As(err, &e) || e.Code != c.code {
					t.Fatalf("Read(%q) error = %v, want code %d", c.wire, err, c.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("Read(%q) error = %v", c.wire, err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("Read(%q) = %#v, want %#v", c.wire, got, c.want)
			}
			if w := string(got.Wire()); w != c.wire {
				t.Errorf("Wire() = %q, want %q", w, c.wire)
			}
		})
	}
}

// TestParseStoredIsLenient: an address queued before the stricter check,
// or by a program that did not check, still reads back, so that gw-send
// fails that recipient alone instead of the whole message.
func TestParseStoredIsLenient(t *testing.T) {
	stored := "Fs@gw.test> SIZE=1\x00Tok@example.net\x00Tx\x1b@example.net\x00"
	env, err := ParseStored([]byte(stored))
	if err != nil || env.Sender != "s@gw.test> SIZE=1" || len(env.Recipients) != 2 {
		t.Fatalf("ParseStored = %#v, %v", env, err)
	}
	if _, err := ParseStored([]byte("Fa@b\x00Tc\r@d\x00")); err == nil {
		t.Error("ParseStored read a CR")
	}
}

func TestReadStopsAtFinalNUL(t *testing.T) {
	r := bufio.NewReader(strings.NewReader("Fa@b\x00\x00trailing"))
	if _, err := Read(r); err != nil {
		t.Fatal(err)
	}
	rest, _ := r.ReadString(0)
	if rest != "trailing" {
		t.Errorf("after the envelope %q is left, want %q", rest, "trailing")
	}
}

func FuzzReadEnvelope(f *testing.F) {
	f.Add([]byte("Fa@example.org\x00Tb@example.net\x00\x00"))
	f.Add([]byte("F\x00\x00"))
	f.Add([]byte("Fa\x00Tb\x00"))
	f.Add([]byte("Fa@b\x00DRET=hdrs ENVID=x+2By\x00Tc@d\x00NNOTIFY=failure ORCPT=rfc822;c@d\x00\x00"))
	f.Add([]byte("Fa@b\x00Tc@d\x00NNOTIFY=NEVER\x00NNOTIFY=NEVER\x00\x00"))
	f.Add([]byte("Fa@b\x00DRET=FULL\x00R\x00Tc@d\x00\x00"))
	f.Fuzz(func(t *testing.T, wire []byte) {
		env, err := Read(bufio.NewReader(bytes.NewReader(wire)))
		if err != nil {
			return
		}
		// What was accepted re-encodes to a prefix of the input (DSN
		// parameters are written again in canonical form) and parses
		// back to itself from its stored form.
		if w := env.Wire(); !bytes.HasPrefix(wire, w) && env.DSN.IsZero() && env.RcptDSN == nil {
			t.Fatalf("Wire() = %q is not a prefix of input %q", w, wire)
		}
		back, err := ParseStored(env.Stored())
		if err != nil || !reflect.DeepEqual(back, env) && !(len(back.Recipients) == 0 && len(env.Recipients) == 0) {
			t.Fatalf("ParseStored(Stored()) = %#v, %v; want %#v", back, err, env)
		}
	})
}

// TestAddKeepsDSNInStep: recipients added without parameters before one
// with them keep theirs empty, and a stock envelope gets no DSN items.
func TestAddKeepsDSNInStep(t *testing.T) {
	var e Envelope
	e.Sender = "a@b"
	e.Add("c@d", dsn.Rcpt{})
	if e.RcptDSN != nil || string(e.Stored()) != "Fa@b\x00Tc@d\x00" {
		t.Fatalf("no DSN: %#v, stored %q", e, e.Stored())
	}
	e.Add("e@f", dsn.Rcpt{Notify: dsn.NotifyNever})
	e.Add("g@h", dsn.Rcpt{})
	if e.RcptDSNOf(0).Notify != 0 || e.RcptDSNOf(1).Notify != dsn.NotifyNever || e.RcptDSNOf(2).Notify != 0 {
		t.Fatalf("RcptDSN out of step: %#v", e.RcptDSN)
	}
	if got := string(e.Stored()); got != "Fa@b\x00Tc@d\x00Te@f\x00NNOTIFY=NEVER\x00Tg@h\x00" {
		t.Errorf("Stored = %q", got)
	}
}
