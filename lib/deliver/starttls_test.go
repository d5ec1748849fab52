package deliver

import (
	"context"
	"crypto/tls"
	"strings"
	"sync"
	"testing"
	"time"

	"gw/lib/dsn"
)

// tlsFailures collects what Dial reports to Config.TLSFailed.
type tlsFailures struct {
	mu   sync.Mutex
	list []TLSFailure
}

func (f *tlsFailures) add(tf *TLSFailure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = append(f.list, *tf)
}

func (f *tlsFailures) get() []TLSFailure {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]TLSFailure(nil), f.list...)
}

// TestSTARTTLSBytesAfter220: a server that sends more after its 220 to
// STARTTLS, in the same write (an injected reply), gets no handshake: the
// connection is dropped, the failure reported at stage starttls, and the
// message goes over a second connection in the clear. No injected line
// is ever read as a reply.
func TestSTARTTLSBytesAfter220(t *testing.T) {
	sv := &server{ehlo: "250-test\r\n250 STARTTLS\r\n", starttls: "220 go ahead\r\n250 injected",
		cert: testCert(t), answer: ok}
	var got tlsFailures
	s := dial(t, sv.start(t), Config{TLSFailed: got.add})
	defer s.Close()
	if s.TLS() {
		t.Fatal("TLS on after bytes came ahead of the handshake")
	}
	f := got.get()
	if len(f) != 1 || f[0].Stage != "starttls" || !strings.HasPrefix(f[0].Host, "test[") ||
		!strings.Contains(f[0].Reason, "sent 14 bytes after its 220 reply") {
		t.Fatalf("reported %+v", f)
	}
	if n := len(sv.conns); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
	if n := len(sv.tlsDone); n != 0 {
		t.Errorf("a handshake completed")
	}
}

// TestSTARTTLSBytesAfterEHLO: bytes the server sent unasked after its
// EHLO reply abort STARTTLS before it is said.
func TestSTARTTLSBytesAfterEHLO(t *testing.T) {
	sv := &server{ehlo: "250-test\r\n250 STARTTLS\r\n220 injected\r\n", starttls: "220 go ahead",
		cert: testCert(t), answer: ok}
	var got tlsFailures
	s := dial(t, sv.start(t), Config{TLSFailed: got.add})
	defer s.Close()
	f := got.get()
	if s.TLS() || len(f) != 1 || f[0].Stage != "starttls" || !strings.Contains(f[0].Reason, "after its EHLO reply") {
		t.Fatalf("TLS %v, reported %+v", s.TLS(), f)
	}
	if got := strings.Join(sv.commands(), "|"); strings.Contains(got, "STARTTLS") {
		t.Errorf("commands %q: STARTTLS said after bytes came unasked", got)
	}
}

// TestSTARTTLSFailuresReported: a 454 and a failed handshake are both
// reported, with their stage and reason; a temporary refusal in the
// session in the clear that follows says why it is in the clear (that
// text is what the journal keeps as the last error).
func TestSTARTTLSFailuresReported(t *testing.T) {
	t.Run("454", func(t *testing.T) {
		sv := &server{ehlo: "250-test\r\n250 STARTTLS\r\n", starttls: "454 4.7.0 TLS not available",
			answer: func(cmd string) string {
				if strings.HasPrefix(cmd, "MAIL") {
					return "451 4.7.1 greylisted"
				}
				return "250 ok"
			}}
		var got tlsFailures
		s := dial(t, sv.start(t), Config{TLSFailed: got.add})
		defer s.Close()
		f := got.get()
		if len(f) != 1 || f[0].Stage != "starttls" || f[0].Reason != "454 4.7.0 TLS not available" {
			t.Fatalf("reported %+v", f)
		}
		_, err := s.Start("a@x.test", 0, false, dsn.Mail{})
		want := " said: 451 4.7.1 greylisted (in reply to MAIL FROM) (in the clear: TLS failed at starttls: 454 4.7.0 TLS not available)"
		if err == nil || !strings.HasSuffix(err.Error(), want) {
			t.Fatalf("MAIL refused: %v, want %q", err, want)
		}
	})
	t.Run("handshake", func(t *testing.T) {
		sv := &server{ehlo: "250-test\r\n250 STARTTLS\r\n", starttls: "220 go ahead", answer: ok}
		sv.cert = &tls.Certificate{} // no certificate: the server's handshake fails
		var got tlsFailures
		s, err := Dial(context.Background(), sv.start(t), Config{Helo: "gw.test", Timeout: 5 * time.Second, TLSFailed: got.add})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		f := got.get()
		if len(f) != 1 || f[0].Stage != "handshake" || f[0].Reason == "" {
			t.Fatalf("reported %+v", f)
		}
	})
}
