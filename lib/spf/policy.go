package spf

import (
	"fmt"
	"strings"
)

// Policy is what a face does with an SPF result (control/spfpolicy).
type Policy int

// The policies. Their numbers are not stored anywhere.
const (
	PolicyNone   Policy = iota // check nothing
	PolicyTag                  // check and report in Authentication-Results only
	PolicyRefuse               // refuse a fail at MAIL; tag the rest
)

// ParsePolicy reads a policy's name: none, tag or refuse.
func ParsePolicy(s string) (Policy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "none", "":
		return PolicyNone, nil
	case "tag":
		return PolicyTag, nil
	case "refuse":
		return PolicyRefuse, nil
	}
	return PolicyNone, fmt.Errorf("spf policy %q: want none, tag or refuse", s)
}

func (p Policy) String() string {
	return [...]string{"none", "tag", "refuse"}[p]
}

// Refusal is the SMTP reply a policy gives a result, or nil when the
// message goes on (tagged when the policy is not none). Only fail is
// refused, permanently with RFC 7372's code for it; softfail, as RFC 7208
// §8.5 says, is at most marked. A temperror is not refused either: the
// sender's DNS being slow is no proof of forgery, and DMARC at the end of
// DATA still judges the message.
func (p Policy) Refusal(r Result) *Reply {
	if p != PolicyRefuse || r.Value != Fail {
		return nil
	}
	return &Reply{Code: 550, Enhanced: "5.7.23",
		Text: fmt.Sprintf("SPF: this client may not send mail as %s (policy of %s)", r.Sender, r.Domain)}
}

// Reply is an SMTP reply, kept as data until the listener writes it.
type Reply struct {
	Code     int
	Enhanced string
	Text     string
}
