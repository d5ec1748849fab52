package state

import (
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"gw/lib/control"
	"gw/lib/logline"
)

// DefaultPrefix is the key prefix when control/statebackendprefix is
// absent.
const DefaultPrefix = "gw:"

// Load returns the shared store dir's control files name, or nil when
// control/statebackend is absent or empty (each host keeps its own
// state, in bbolt). The files:
//
//	statebackend          redis://host:port/db or rediss://host:port/db
//	statebackendpassword  the server's password (AUTH), one line
//	statebackendprefix    the key prefix of this group of hosts
//	statebackendca        a PEM file of the roots a rediss:// server's
//	                      certificate is verified against (default: the
//	                      system's), for a server with a private CA
func Load(dir control.Dir, log *logline.Logger) (*Redis, error) {
	url, ok, err := dir.Line("statebackend")
	if err != nil || !ok || url == "" {
		return nil, err
	}
	if !strings.HasPrefix(url, "redis://") && !strings.HasPrefix(url, "rediss://") {
		return nil, fmt.Errorf("control/statebackend: %q is neither redis:// nor rediss://", url)
	}
	password, _, err := dir.Line("statebackendpassword")
	if err != nil {
		return nil, err
	}
	prefix, ok, err := dir.Line("statebackendprefix")
	if err != nil {
		return nil, err
	}
	if !ok || prefix == "" {
		prefix = DefaultPrefix
	}
	roots, err := loadRoots(dir)
	if err != nil {
		return nil, err
	}
	return OpenRedisTLS(url, password, prefix, roots, log)
}

// loadRoots reads the PEM file control/statebackendca names, or nil when
// none is named. A file that holds no certificate is an error, not the
// system's roots: the admin meant a CA of their own.
func loadRoots(dir control.Dir) (*x509.CertPool, error) {
	path, ok, err := dir.Line("statebackendca")
	if err != nil || !ok || path == "" {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("control/statebackendca: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("control/statebackendca: %s holds no PEM certificate", path)
	}
	return roots, nil
}
