package scan

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gw/lib/control"
	"gw/lib/logline"
)

// Defaults of the control files gw-scan reads (gw-scan(8) FILES).
const (
	DefaultTimeout    = 30 * time.Second
	DefaultClamdBytes = 25 << 20 // below clamd's StreamMaxLength (100M; 25M in older clamd)
	DefaultSpamdBytes = 500 << 10
	// rspamd reads the whole message, as spamd does, but faster: the
	// bound is what a gateway sees of ordinary mail, below rspamd's own
	// max_message.
	DefaultRspamdBytes = 20 << 20
)

// Load reads the engine's control files from dir: clamd, spamd, rspamd,
// rspamdmaxbytes,
// scantimeout, clamdmaxbytes, spamdmaxbytes, spamkill, scanpolicy,
// bannedext, bannedtypes, mimemaxdepth, mimemaxparts, scaneicar,
// scansecret and me. A file that exists but is wrong is an error.
func Load(dir control.Dir, log *logline.Logger) (*Scanner, error) {
	s := &Scanner{Log: log}
	// Like the listeners, gw-scan will not start without the host's
	// name: it names the host in the headers it adds and in its proxy's
	// greeting, and "localhost" there would be quietly wrong.
	me, _, err := dir.Line("me")
	if err != nil {
		return nil, err
	}
	if me == "" {
		return nil, errors.New("control/me is missing: the host needs a name")
	}
	s.Hostname = me
	secs, err := dir.Int("scantimeout", int64(DefaultTimeout/time.Second))
	if err != nil {
		return nil, err
	}
	timeout := time.Duration(max(secs, 1)) * time.Second
	if addr, ok, err := dir.Line("clamd"); err != nil {
		return nil, err
	} else if ok && addr != "" {
		n, err := dir.Int("clamdmaxbytes", DefaultClamdBytes)
		if err != nil {
			return nil, err
		}
		s.Clamd = &Clamd{Addr: addr, Timeout: timeout, MaxStream: n}
	}
	if addr, ok, err := dir.Line("spamd"); err != nil {
		return nil, err
	} else if ok && addr != "" {
		n, err := dir.Int("spamdmaxbytes", DefaultSpamdBytes)
		if err != nil {
			return nil, err
		}
		s.Spamd = &Spamd{Addr: addr, Timeout: timeout, MaxSize: n}
	}
	if addr, ok, err := dir.Line("rspamd"); err != nil {
		return nil, err
	} else if ok && addr != "" {
		n, err := dir.Int("rspamdmaxbytes", DefaultRspamdBytes)
		if err != nil {
			return nil, err
		}
		s.Rspamd = &Rspamd{Addr: addr, Timeout: timeout, MaxSize: n}
	}
	if v, ok, err := dir.Line("spamkill"); err != nil {
		return nil, err
	} else if ok && v != "" {
		s.SpamKill, err = strconv.ParseFloat(v, 64)
		if err != nil || s.SpamKill <= 0 {
			return nil, fmt.Errorf("control/spamkill: want a positive score, got %q", truncate(v, 40))
		}
	}
	lines, _, err := dir.List("scanpolicy")
	if err != nil {
		return nil, err
	}
	if s.Policy, err = ParsePolicy(lines); err != nil {
		return nil, fmt.Errorf("control/%w", err)
	}
	if s.MIME, err = loadMIME(dir); err != nil {
		return nil, err
	}
	if secret, ok, err := dir.Line("scansecret"); err != nil {
		return nil, err
	} else if ok {
		if len(secret) < 16 {
			return nil, fmt.Errorf("control/scansecret: shorter than 16 bytes")
		}
		s.Trust = &Trust{Secret: []byte(secret), Host: me}
	}
	return s, nil
}

func loadMIME(dir control.Dir) (*MIMERules, error) {
	m := &MIMERules{BannedExt: map[string]bool{}, MaxArchive: DefaultMaxArchive}
	exts, ok, err := dir.List("bannedext")
	if err != nil {
		return nil, err
	}
	if !ok {
		exts = DefaultBannedExt
	}
	for _, e := range exts {
		m.BannedExt[strings.ToLower(strings.TrimPrefix(strings.TrimSpace(e), "."))] = true
	}
	types, ok, err := dir.List("bannedtypes")
	if err != nil {
		return nil, err
	}
	if !ok {
		types = DefaultBannedTypes
	}
	for _, t := range types {
		m.BannedTypes = append(m.BannedTypes, strings.ToLower(strings.TrimSpace(t)))
	}
	depth, err := dir.Int("mimemaxdepth", DefaultMaxDepth)
	if err != nil {
		return nil, err
	}
	parts, err := dir.Int("mimemaxparts", DefaultMaxParts)
	if err != nil {
		return nil, err
	}
	eicar, err := dir.Int("scaneicar", 1)
	if err != nil {
		return nil, err
	}
	m.MaxDepth, m.MaxParts, m.EICAR = int(depth), int(parts), eicar != 0
	return m, nil
}
