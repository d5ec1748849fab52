package send

import (
	"errors"
	"net/netip"
	"testing"

	"gw/lib/deliver"
	"gw/lib/queue"
	"gw/lib/route"
)

// TestOutcomeOf: every kind of failure becomes an outcome with its source,
// status, stage and server taken from the error's fields, never from its
// text: an address that looks like a status stays an address.
func TestOutcomeOf(t *testing.T) {
	refused := &deliver.ConnError{Host: "mx[10.5.4.1]:25", Err: errors.New("connection refused"),
		Stage: deliver.StageConnect, Enhanced: deliver.StatusNoAnswer}
	mx := func(ip string, port int) route.Host {
		return route.Host{Name: "mx", Addr: netip.MustParseAddr(ip), Port: port}
	}
	none := route.Host{}
	cases := []struct {
		err  error
		dot  bool
		at   route.Host
		want queue.Outcome
	}{
		{refused, false, mx("10.5.4.1", 25), queue.Outcome{Source: queue.FromConn, Status: "4.4.1", Text: "connection refused",
			Host: "mx", Addr: "10.5.4.1:25", Stage: "connect"}},
		{afterDot(true, &deliver.ConnError{Host: "mx[2001:db8::1]:25", Err: errors.New("EOF"), Stage: deliver.StageDot}), true, mx("2001:db8::1", 25),
			queue.Outcome{Source: queue.FromConn, Status: "4.4.2", Text: "EOF", Host: "mx", Addr: "[2001:db8::1]:25",
				Stage: "end of data", DotSent: true, Note: "possible duplicate: no reply after the final dot"}},
		{&deliver.Reply{Code: 554, Text: "5.7.1 go away", Enhanced: "5.7.1", Host: "mx[192.0.2.1]:25", Stage: deliver.StageGreeting}, false, mx("192.0.2.1", 25),
			queue.Outcome{Source: queue.FromReply, Code: 554, Status: "4.7.1", Text: "5.7.1 go away", Host: "mx",
				Addr: "192.0.2.1:25", Stage: "greeting"}},
		{&deliver.Reply{Code: 550, Text: "no such user", Host: "mx[192.0.2.1]:25", Stage: deliver.StageRcpt}, false, mx("192.0.2.1", 25),
			queue.Outcome{Source: queue.FromReply, Code: 550, Status: "5.0.0", Text: "no such user", Host: "mx",
				Addr: "192.0.2.1:25", Stage: "RCPT TO"}},
		{&deliver.Reply{Code: 554, Enhanced: "5.6.3", Own: true, Text: "5.6.3 no 8BITMIME"}, false, none,
			queue.Outcome{Source: queue.FromGW, Code: 554, Status: "5.6.3", Text: "5.6.3 no 8BITMIME"}},
		{&deliver.Reply{Code: 451, Text: "disk full", Host: "q[192.0.2.9]:209"}, true, route.Host{Name: "q", Addr: netip.MustParseAddr("192.0.2.9"), Port: 209},
			queue.Outcome{Source: queue.FromQMTP, Code: 451, Status: "4.0.0", Text: "disk full", Host: "q",
				Addr: "192.0.2.9:209", DotSent: true}},
		{&route.Error{Perm: true, Msg: "mail for x.test loops back to myself", Status: "5.4.6"}, false, none,
			queue.Outcome{Source: queue.FromGW, Status: "5.4.6", Text: "mail for x.test loops back to myself"}},
		{errLooping, false, none, queue.Outcome{Source: queue.FromGW, Status: "5.4.6", Text: "too many hops, this message is looping"}},
		{deliver.Unwritable("a\nb@x.test", false), false, none, queue.Outcome{Source: queue.FromGW, Status: "5.1.3",
			Text: deliver.Unwritable("a\nb@x.test", false).(verdict).Reason()}},
		{errors.New("something odd"), false, none, queue.Outcome{Source: queue.FromGW, Status: "4.0.0", Text: "something odd"}},
	}
	for _, c := range cases {
		if got := outcomeOf(c.err, c.dot, c.at); got != c.want {
			t.Errorf("outcomeOf(%v):\n got %+v\nwant %+v", c.err, got, c.want)
		}
	}
}

// TestDSNRecipient: a server's reply is the Diagnostic-Code of type smtp
// with its code and enhanced code; gw's own verdicts and failures without
// a reply are of type x-gw; an expiry keeps the last reply and says 5.4.7.
func TestDSNRecipient(t *testing.T) {
	reply := queue.Outcome{Source: queue.FromReply, Code: 550, Status: "5.1.1", Text: "5.1.1 no such user",
		Host: "mx.y.test", Addr: "192.0.2.1:25", Stage: "RCPT TO", Note: "delivered in the clear after a TLS failure"}
	cases := []struct {
		o                              queue.Outcome
		status, mta, typ, diag, action string
	}{
		{reply, "5.1.1", "mx.y.test", "smtp", "550 5.1.1 no such user", "failed"},
		{expired(queue.Outcome{Source: queue.FromReply, Code: 451, Status: "4.3.0", Text: "4.3.0 later", Host: "mx.y.test"}),
			"5.4.7", "mx.y.test", "smtp", "451 4.3.0 later", "failed"},
		{queue.Outcome{Source: queue.FromConn, Status: "4.4.1", Text: "connection refused", Host: "mx.y.test",
			Addr: "192.0.2.1:25", Stage: "connect"}, "4.4.1", "mx.y.test", "x-gw", "connection refused", "delayed"},
		{queue.Outcome{Source: queue.FromConn, Status: "4.4.2", Text: "EOF", Host: "mx.y.test", Stage: "end of data",
			DotSent: true, Note: "possible duplicate"}, "4.4.2", "mx.y.test", "x-gw", "EOF (during end of data) (possible duplicate)", "delayed"},
		{queue.Outcome{Source: queue.FromGW, Status: "5.4.6", Text: "too many hops"}, "5.4.6", "", "x-gw", "too many hops", "failed"},
		{queue.TextOutcome("mx said: 550 gone (#5.1.1)", queue.Failed), "5.1.1", "", "x-gw", "mx said: 550 gone (#5.1.1)", "failed"},
		{queue.Outcome{}, "4.0.0", "", "x-gw", "", "delayed"},
	}
	for _, c := range cases {
		r := dsnRecipient(queue.Recipient{Address: "u@y.test", Outcome: c.o}, c.action)
		if r.Status != c.status || r.RemoteMTA != c.mta || r.DiagnosticType != c.typ || r.Diagnostic != c.diag ||
			r.Action != c.action || r.Explanation != c.o.String() {
			t.Errorf("dsnRecipient(%+v) = %+v\nwant status %s, Remote-MTA %q, %s; %q", c.o, r, c.status, c.mta, c.typ, c.diag)
		}
	}
}
