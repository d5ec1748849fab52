package send

import (
	"errors"
	"strings"
	"testing"

	"gw/lib/route"
)

// An SMTPUTF8 address's domain is shown as the admin typed it, with the
// A-labels DNS is asked for beside it; a control character or a broken
// byte from the network still prints as '_'.
func TestExplanationWriteShowsAnIDNDomainAsTyped(t *testing.T) {
	e := &Explanation{
		Address:  "user@münchen.de",
		Domain:   "münchen.de",
		Route:    route.Route{Proto: route.SMTP},
		HostsErr: errors.New("no mail host for xn--mnchen-3ya.de: \x1b[31mred\xff (#5.1.2)"),
		TLS:      "may",
	}
	var b strings.Builder
	if err := e.Write(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"address: user@münchen.de\n",
		"domain: münchen.de (in DNS xn--mnchen-3ya.de)\n",
		"fails: no mail host for xn--mnchen-3ya.de: _[31mred_ (#5.1.2)\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no %q in:\n%s", want, b.String())
		}
	}
}

// An ASCII domain gets no second form.
func TestExplanationWriteASCIIDomainAlone(t *testing.T) {
	e := &Explanation{Address: "bob@example.net", Domain: "example.net", Route: route.Route{Proto: route.SMTP}, TLS: "may"}
	var b strings.Builder
	e.Write(&b)
	if !strings.Contains(b.String(), "domain: example.net\n") {
		t.Errorf("no plain domain line in:\n%s", b.String())
	}
}
