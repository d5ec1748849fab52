package state

import (
	"fmt"
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
	return OpenRedis(url, password, prefix, log)
}
