package tlspolicy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gw/lib/control"
)

// Load reads an instance's TLS settings from its control directory:
// tlspolicy (the entries), tlslevel (the default level: may, or none
// when tlsremote is 0), tlscafile (the roots verify and secure trust,
// the system's when absent), and each entry's client certificate. A
// file that cannot be read or is wrong is an error: gw-send refuses to
// start (or keeps its old settings on SIGHUP) rather than guess.
func Load(dir string, tlsOn bool) (*Policy, error) {
	d := control.Dir(dir)
	def := May
	if !tlsOn {
		def = None
	}
	name, ok, err := d.Line("tlslevel")
	if err != nil {
		return nil, err
	}
	if ok && name != "" {
		if def, err = ParseLevel(name); err != nil {
			return nil, fmt.Errorf("control/tlslevel: %w", err)
		}
	}
	text, err := os.ReadFile(filepath.Join(dir, "tlspolicy"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	p, err := Parse(string(text), def)
	if err != nil {
		return nil, fmt.Errorf("control/tlspolicy: %w", err)
	}
	for _, e := range p.entries {
		if e.CertFile == "" {
			continue
		}
		c, err := tls.LoadX509KeyPair(abs(dir, e.CertFile), abs(dir, e.KeyFile))
		if err != nil {
			return nil, fmt.Errorf("control/tlspolicy: line %d: %w", e.Line, err)
		}
		e.Cert = &c
	}
	ca, ok, err := d.Line("tlscafile")
	if err != nil {
		return nil, err
	}
	if ok && ca != "" {
		pem, err := os.ReadFile(abs(dir, ca))
		if err != nil {
			return nil, fmt.Errorf("control/tlscafile: %w", err)
		}
		p.Roots = x509.NewCertPool()
		if !p.Roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("control/tlscafile: %s holds no PEM certificate", ca)
		}
	}
	return p, nil
}

// abs reads a relative file name from the control directory.
func abs(dir, name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(dir, name)
}
