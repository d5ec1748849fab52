package sessiontest

import "gw/lib/greylist"

// Greylist asks the listener's greylist what it would answer without
// recording the triplet (greylist.List.Peek). A list it cannot read
// fails open, as the listener's does.
type Greylist struct {
	List    *greylist.List
	Explain func(string)
}

// Check is smtpd.Greylist's, writing nothing.
func (g *Greylist) Check(ip, from, rcpt string) (bool, error) {
	pass, why, err := g.List.Peek(ip, from, rcpt)
	if err == nil {
		g.Explain("greylist: " + why + " (nothing recorded: session test)")
	}
	return pass, err
}
