package main

import (
	"path/filepath"
	"strings"

	"gw/lib/callout"
	"gw/lib/checkpassword"
	"gw/lib/control"
	"gw/lib/dmarcreport"
	"gw/lib/dns"
	"gw/lib/greylist"
	"gw/lib/logline"
	"gw/lib/ratelimit"
	"gw/lib/rbl"
	"gw/lib/scan"
	"gw/lib/smtpd"
	"gw/lib/state"
)

// lasting holds what outlives a reload: the bbolt files a standalone
// listener keeps open (a reload must not open a second writer of the same
// file) and the AUTH failures counted across sessions.
type lasting struct {
	greylist  *greylist.List
	cache     *callout.Cache
	authLimit *smtpd.AuthLimiter
	shared    *state.Redis  // control/statebackend, opened once
	local     *state.Memory // the rate counts of this process
	host      *state.Bolt   // --rates: the rate counts of this host
}

// configure reads the control files into a listener configuration, at
// start and again on SIGHUP.
func configure(c *config, keep *lasting) (*smtpd.Config, error) {
	dir := control.Dir(c.ControlDir)
	standalone := len(c.Listen) > 0
	cfg, err := smtpd.Load(dir, logline.Stderr)
	if err != nil {
		return nil, err
	}
	cfg.ImplicitTLS = c.implicitTLS
	if c.checkpw != "" {
		cfg.Auth = &checkpassword.Checker{Argv: strings.Fields(c.checkpw)}
	}
	zones, _, err := dir.List("rblzones")
	if err != nil {
		return nil, err
	}
	if z := rbl.Parse(zones); len(z) > 0 {
		cfg.RBL = &rbl.Checker{Zones: z, Resolver: dns.FromEnv()}
	}
	if keep.shared == nil {
		// Opened once: a reload does not drop the pool under sessions
		// that use it; a new server needs a restart.
		if keep.shared, err = state.Load(dir, logline.Stderr); err != nil {
			return nil, err
		}
	}
	if keep.local == nil {
		keep.local = &state.Memory{}
	}
	if keep.host == nil && c.ratesDB != "" {
		// Opened once, like the greylist file: standalone it is kept
		// open, and a reload must not open a second writer of it.
		keep.host = &state.Bolt{Path: c.ratesDB, Keep: standalone}
	}
	cfg.Limits = &ratelimit.Limiter{Local: keep.local, Log: logline.Stderr}
	if keep.shared != nil {
		cfg.Limits.Store = keep.shared
	}
	if keep.host != nil {
		cfg.Limits.Host = keep.host
	}
	if c.greylistDB != "" {
		g, err := greylist.Load(dir, c.greylistDB)
		if err != nil {
			return nil, err
		}
		g.Keep = standalone // the one writer while it runs
		if keep.greylist == nil {
			keep.greylist = g
		}
		if keep.greylist == g {
			g.Shared = keep.shared // set before any session can read it
		}
		keep.greylist.SetTimings(g)
		cfg.Greylist = keep.greylist
	}
	if cfg.MsgAuth != nil && c.dmarcReports != "" {
		cfg.MsgAuth.Reports = dmarcreport.File{Path: c.dmarcReports}
	}
	if cfg.MsgAuth != nil {
		cfg.Quarantine = c.quarantineDir()
	}
	v, err := callout.Load(dir, c.calloutCache, standalone)
	if err != nil {
		return nil, err
	}
	if v != nil {
		if keep.cache == nil {
			keep.cache = v.Cache
			if keep.shared != nil { // the shared cache needs no file
				if keep.cache == nil {
					keep.cache = &callout.Cache{}
				}
				keep.cache.Shared = keep.shared
			}
		}
		v.Cache = keep.cache
		cfg.Verifier = v
	}
	if !standalone {
		cfg.AuthLimit = nil // one session a process: nothing to count across
	} else if keep.authLimit == nil {
		keep.authLimit = cfg.AuthLimit
	} else {
		keep.authLimit.SetLimits(cfg.AuthLimit.Max, cfg.AuthLimit.Window)
		cfg.AuthLimit = keep.authLimit
	}
	return cfg, nil
}

// quarantineDir is where DMARC's quarantine holds messages: --quarantine,
// else quarantine/ beside the control directory, as gw-scan finds it, so
// that gw-scan quarantine lists both the same way.
func (c *config) quarantineDir() *scan.QuarantineDir {
	if c.quarantine != "" {
		return &scan.QuarantineDir{Dir: c.quarantine}
	}
	return &scan.QuarantineDir{Dir: filepath.Join(filepath.Dir(filepath.Clean(c.ControlDir)), "quarantine")}
}
