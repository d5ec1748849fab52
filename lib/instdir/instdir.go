// Package instdir turns the --root and --instance an admin types into the
// paths of that instance's parts. Every program that takes an instance
// asks here, so that "which instance" is decided one way, in main, and a
// name that could climb out of the root is refused the same everywhere.
package instdir

import (
	"fmt"
	"path/filepath"
)

// DefaultRoot is where instances live unless --root says otherwise.
const DefaultRoot = "/var/gw"

// validName reports whether name is what gw-instance lets an instance be
// called: it becomes a directory and a service name, so no dots, slashes
// or capitals; a lowercase letter or digit, then up to 31 of those, '-'
// and '_'. A loop, not a regular expression: every program that takes an
// instance compiled one at each start (380 allocations), and gw-scan's
// wrapper starts once a message.
func validName(name string) bool {
	if len(name) == 0 || len(name) > 32 {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '-' || c == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}

// Dir is one instance's directory under its root.
type Dir struct {
	Root, Name string
}

// Choose checks name and returns the instance's directory under root. It
// does not look at the disk: a daemon started before its instance is
// complete reports what it misses itself, with the path.
func Choose(root, name string) (Dir, error) {
	if !validName(name) {
		return Dir{}, fmt.Errorf("bad instance name %q (lowercase letters, digits, - and _)", name)
	}
	if root == "" {
		root = DefaultRoot
	}
	return Dir{Root: root, Name: name}, nil
}

// Path joins elem to the instance's directory.
func (d Dir) Path(elem ...string) string {
	return filepath.Join(append([]string{d.Root, d.Name}, elem...)...)
}

// Control is the instance's control directory.
func (d Dir) Control() string { return d.Path("control") }

// Queue is the instance's queue directory.
func (d Dir) Queue() string { return d.Path("queue") }

// Quarantine is where gw-scan (and gw-smtpd's DMARC) hold messages.
func (d Dir) Quarantine() string { return d.Path("quarantine") }

// InjectSocket is the socket the instance's gw-queued serves and its
// listeners hand messages to.
func (d Dir) InjectSocket() string { return d.Path("inject", "inject.sock") }

// ACL is the compiled rules database of the table name (tcp.smtp,
// tcp.qmtp) in the instance's acl/.
func (d Dir) ACL(table string) string { return d.Path("acl", table+".db") }
