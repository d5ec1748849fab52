// Package authcheck is message authentication at one face of the
// gateway: SPF when the sender is known, DKIM, DMARC and ARC when the
// message has ended, one Authentication-Results field, DKIM signing for
// relayed mail and ARC sealing where configured. It joins lib/spf,
// lib/dkim, lib/dmarc, lib/arc and lib/authres behind the two questions a
// listener asks (MAIL and end of message), so that the listener's policy
// holds no authentication logic of its own.
//
// Settings are control files, each with a tcprules variable that
// overrides it for the clients (and so the face) a rule covers, as
// SPAMCONTROL's spfbehavior/SPFBEHAVIOR do for qmail; see gw-auth(5).
package authcheck

import (
	"fmt"
	"strings"

	"gw/lib/arc"
	"gw/lib/control"
	"gw/lib/dkim"
	"gw/lib/dmarc"
	"gw/lib/spf"
)

// Config is an instance's authentication settings, read once at start
// (and again at reload) from its control files.
type Config struct {
	AuthservID string            // control/authservid, else control/me
	SPF        spf.Policy        // control/spfpolicy (SPFPOLICY)
	DMARC      dmarc.Enforcement // control/dmarcpolicy (DMARCPOLICY)
	Verify     bool              // control/dmarcpolicy exists: DKIM, DMARC and ARC are checked
	Forwarders dmarc.Forwarders  // control/dmarcforwarders
	// TagOnly is control/dmarcquarantine "tag": a message DMARC
	// quarantines is queued with the X-Gw-Quarantine mark for the inside
	// to act on. The default, "hold", keeps it in the instance's
	// quarantine, where gw-scan quarantine lists and releases it.
	TagOnly       bool
	MaxSignatures int          // control/dkimmaxsignatures, default dkim.MaxSignatures
	Signer        *dkim.Signer // control/dkim/DOMAIN/SELECTOR.key; nil without keys
	Sealer        *arc.Sealer  // control/arcseal "DOMAIN SELECTOR"; nil when absent
}

// Load reads the settings from the control directory dir. A setting
// that cannot be read or understood is an error: a gateway must not start
// with less checking than its administrator wrote.
func Load(dir string) (*Config, error) {
	d := control.Dir(dir)
	c := &Config{}
	var err error
	if c.AuthservID, err = d.LineOrMe("authservid", ""); err != nil {
		return nil, err
	}
	if line, ok, err := d.Line("spfpolicy"); err != nil {
		return nil, err
	} else if ok {
		if c.SPF, err = spf.ParsePolicy(line); err != nil {
			return nil, fmt.Errorf("control/spfpolicy: %v", err)
		}
	}
	if line, ok, err := d.Line("dmarcpolicy"); err != nil {
		return nil, err
	} else if ok {
		c.Verify = true
		if c.DMARC, err = dmarc.ParseEnforcement(line); err != nil {
			return nil, fmt.Errorf("control/dmarcpolicy: %v", err)
		}
	}
	if line, ok, err := d.Line("dmarcquarantine"); err != nil {
		return nil, err
	} else if ok {
		if c.TagOnly, err = parseQuarantine(line); err != nil {
			return nil, err
		}
	}
	lines, _, err := d.List("dmarcforwarders")
	if err != nil {
		return nil, err
	}
	if c.Forwarders, err = dmarc.ParseForwarders(lines); err != nil {
		return nil, fmt.Errorf("control/dmarcforwarders: %v", err)
	}
	max, err := d.Int("dkimmaxsignatures", dkim.MaxSignatures)
	if err != nil {
		return nil, err
	}
	c.MaxSignatures = int(max)
	keys, err := dkim.LoadKeys(dir)
	if err != nil {
		return nil, err
	}
	if len(keys) > 0 {
		c.Signer = dkim.NewSigner(keys)
	}
	if c.Sealer, err = loadSealer(d, dir, keys, c.AuthservID); err != nil {
		return nil, err
	}
	if (c.Verify || c.SPF != spf.PolicyNone || c.Sealer != nil) && c.AuthservID == "" {
		return nil, fmt.Errorf("control/authservid and control/me are missing: Authentication-Results needs a name")
	}
	return c, nil
}

// parseQuarantine reads control/dmarcquarantine: hold or tag.
func parseQuarantine(line string) (tagOnly bool, err error) {
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "hold":
		return false, nil
	case "tag":
		return true, nil
	}
	return false, fmt.Errorf("control/dmarcquarantine: %q: want hold or tag", line)
}

// loadSealer reads control/arcseal: the domain and selector whose key
// (under control/dkim/) seals.
func loadSealer(d control.Dir, dir string, keys map[string][]*dkim.PrivateKey, id string) (*arc.Sealer, error) {
	line, ok, err := d.Line("arcseal")
	if err != nil || !ok {
		return nil, err
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		return nil, fmt.Errorf("control/arcseal: want DOMAIN SELECTOR, not %q", line)
	}
	domain, selector := strings.ToLower(f[0]), f[1]
	for _, k := range keys[domain] {
		if k.Selector == selector {
			return &arc.Sealer{Domain: domain, Selector: selector, Key: k.Signer, AuthservID: id}, nil
		}
	}
	return nil, fmt.Errorf("control/arcseal: no key %s", dkim.KeyFile(dir, domain, selector))
}

// Face is the settings for one client: the instance's, with the
// overrides its tcprules rule set (SPFPOLICY, DMARCPOLICY, ARCSEAL).
type Face struct {
	SPF    spf.Policy
	DMARC  dmarc.Enforcement
	Verify bool
	Seal   bool // ARCSEAL set: this face feeds the inside, seal what it passes on
}

// ForClient applies a client's environment. A value that cannot be read
// leaves the control file's setting in force: a typing error in a rules
// file must not turn checks off. It returns the face and the first bad
// value, for the log.
func (c *Config) ForClient(env func(string) (string, bool)) (Face, error) {
	f := Face{SPF: c.SPF, DMARC: c.DMARC, Verify: c.Verify}
	var bad error
	if v, ok := env("SPFPOLICY"); ok {
		if p, err := spf.ParsePolicy(v); err != nil {
			bad = fmt.Errorf("SPFPOLICY: %v", err)
		} else {
			f.SPF = p
		}
	}
	if v, ok := env("DMARCPOLICY"); ok {
		if e, err := dmarc.ParseEnforcement(v); err != nil && bad == nil {
			bad = fmt.Errorf("DMARCPOLICY: %v", err)
		} else if err == nil {
			f.DMARC, f.Verify = e, true
		}
	}
	if _, ok := env("ARCSEAL"); ok && c.Sealer != nil {
		f.Seal = true
	}
	return f, bad
}
