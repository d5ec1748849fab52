package deliver

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"syscall"
	"time"

	"gw/lib/route"
)

// TLSFailure is a STARTTLS that did not give an encrypted session with a
// server that offered it. Stage says where it failed:
//
//	starttls   the server refused STARTTLS (454…) or did not offer it
//	           where the policy requires it, or sent bytes after
//	           its EHLO or 220 reply that nothing asked for: a reply
//	           injected in the clear would be taken for one that came
//	           over TLS (RFC 3207 5, the CVE-2011-0411 class)
//	handshake  the TLS handshake failed
//	verify     the certificate fails the policy (verify, secure, DANE)
//
// At a level that requires TLS (Required, or TLSA records) every
// failure drops the connection and Dial returns it: the mail is
// deferred, never sent in the clear. Otherwise a refusal leaves the
// session going on in the clear; the other failures drop the
// connection, and Dial tries again in the clear.
type TLSFailure struct {
	Host   string
	Stage  string
	Reason string
}

func (f *TLSFailure) Error() string {
	return fmt.Sprintf("TLS failed at %s: %s", f.Stage, f.Reason)
}

// note is the remark the session in the clear adds to its temporary
// errors, "" for none.
func (f *TLSFailure) note() string {
	if f == nil {
		return ""
	}
	return "in the clear: " + f.Error()
}

func (c *Config) reportTLS(f *TLSFailure) {
	if c.TLSFailed != nil {
		c.TLSFailed(f)
	}
}

// startTLS says STARTTLS, checks that the server sent nothing ahead, and
// shakes hands. It returns an error only for a session that cannot go
// on: a refused STARTTLS is reported and the session stays in the clear.
func (s *smtpSession) startTLS(name string) error {
	if s.kw.ahead > 0 {
		return s.tlsFailure("starttls", fmt.Sprintf("the server sent %d bytes after its EHLO reply, unasked", s.kw.ahead), "")
	}
	if _, err := io.WriteString(s.dc, "STARTTLS\r\n"); err != nil {
		return s.fail(err, StageTLS)
	}
	br := bufio.NewReader(s.dc)
	code, text, err := textproto.NewReader(br).ReadResponse(0)
	var te *textproto.Error
	if err != nil && !errors.As(err, &te) {
		return s.fail(err, StageTLS)
	}
	if code != 220 && s.cfg.policy().required() {
		return s.tlsFailure("starttls", fmt.Sprintf("%d %s", code, oneLine(text)), "")
	}
	if code != 220 {
		f := &TLSFailure{Host: s.host, Stage: "starttls", Reason: fmt.Sprintf("%d %s", code, oneLine(text))}
		s.tlsFailed = f
		s.cfg.reportTLS(f)
		return nil // offered but refused: go on in the clear
	}
	// Whatever is already here came before the client's first TLS
	// record and is not TLS: read by the handshake, it would fail it;
	// left behind, it would be read as replies after it. Either way the
	// session is not what it seems.
	if n := br.Buffered() + waiting(s.raw); n > 0 {
		return s.tlsFailure("starttls", fmt.Sprintf("the server sent %d bytes after its 220 reply, before the TLS handshake", n), "")
	}
	p := s.cfg.policy()
	cfg := s.cfg.TLS
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg = cfg.Clone()
	// The certificate is checked after the handshake, by the policy
	// (authenticate): at may and encrypt a bad one is only reported.
	cfg.InsecureSkipVerify = true
	if p.Cert != nil {
		cfg.Certificates = []tls.Certificate{*p.Cert}
	}
	if cfg.ServerName == "" && route.Domain("x@"+name) != "" && !strings.HasPrefix(name, "[") {
		cfg.ServerName = name
	}
	tc := tls.Client(s.dc, cfg)
	if err := tc.Handshake(); err != nil {
		return s.tlsFailure("handshake", err.Error(), "")
	}
	st, err := p.authenticate(tc.ConnectionState(), time.Now())
	if err != nil {
		tc.Close()
		return s.tlsFailure("verify", err.Error(), StatusBadCert)
	}
	st.NameChecked = nameChecked(st, p, tc.ConnectionState().PeerCertificates, name)
	s.state = st
	// A fresh client reads from the TLS connection only. It expects a
	// greeting, which the server gave before TLS: it gets a copy.
	s.newClient(&greetedConn{Conn: tc, greeting: strings.NewReader("220 " + s.host + " TLS\r\n")})
	s.tls = true
	if err := s.hello(); err != nil {
		return s.fail(err, StageHello)
	}
	return nil
}

// tlsFailure ends the session with a TLS failure, for Dial to report and
// try again in the clear.
func (s *smtpSession) tlsFailure(stage, reason, status string) error {
	s.broken = true
	return &ConnError{Host: s.host, Err: &TLSFailure{Host: s.host, Stage: stage, Reason: reason}, Stage: StageTLS, Enhanced: status}
}

// waiting is how many bytes have arrived on conn and are not yet read,
// without waiting for more: a peek at the socket's receive queue.
func waiting(conn net.Conn) int {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	var buf [512]byte
	rc.Read(func(fd uintptr) bool {
		m, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == nil && m > 0 {
			n = m
		}
		return true // never wait for readiness
	})
	return n
}
