package scan

import (
	"io"
	"net/netip"
	"os"
	"regexp"
	"sync"

	"gw/lib/envelope"
)

// smtpdReceived reads the client from the Received field gw-smtpd puts on
// top: "from HOST (HELO NAME) (INFO@IP) by LOCAL (gw-smtpd) with ...".
// Only that form is read (the "(gw-smtpd)" tag and the id): a field a
// sender wrote itself lower down is never taken for the client.
// Compiled at its first use, as the other expressions a wrapper run may
// not need: a process a message pays every init.
var smtpdReceived = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^Received: from ([!-~]+)(?: \(HELO ([!-~]+)\))? \((?:[!-~]*@)?([0-9A-Fa-f.:]+)\)\n  by [!-~]+ \(gw-smtpd\) with [A-Z]+ id [!-:<-~]{1,64};`)
})

// clientFromReceived returns the client's address, name and HELO from
// the message's first field, when gw-smtpd wrote it.
func clientFromReceived(spool io.ReaderAt) (ip, host, helo string) {
	b := make([]byte, 2048)
	n, _ := spool.ReadAt(b, 0)
	m := smtpdReceived().FindSubmatch(b[:n])
	if m == nil {
		return "", "", ""
	}
	if a, err := netip.ParseAddr(string(m[3])); err == nil {
		ip = a.Unmap().String()
	}
	host, helo = string(m[1]), string(m[2])
	if host == "unknown" {
		host = ""
	}
	if helo == "" {
		helo = host // gw-smtpd leaves HELO out when it is the host's name
	}
	return ip, host, helo
}

// meta is what the wrapper tells rspamd: the envelope it read, and the
// client from tcpserver's environment when the listener runs under it,
// else from the Received field gw-smtpd wrote.
func (w *Wrapper) meta(spool io.ReaderAt, e envelope.Envelope) Meta {
	if w.Scanner.Rspamd == nil {
		return Meta{} // rspamd alone is told
	}
	m := Meta{From: e.Sender, Rcpts: e.Recipients, QueueID: msgID(spool)}
	m.IP, m.Hostname, m.Helo = clientFromReceived(spool)
	if ip := os.Getenv("TCPREMOTEIP"); ip != "" {
		if a, err := netip.ParseAddr(ip); err == nil {
			m.IP = a.Unmap().String()
			m.Hostname = os.Getenv("TCPREMOTEHOST")
		}
	}
	return m
}
