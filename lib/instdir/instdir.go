// Package instdir turns the --root and --instance an admin types into the
// paths of that instance's parts. Every program that takes an instance
// asks here, so that "which instance" is decided one way, in main, and a
// name that could climb out of the root is refused the same everywhere.
package instdir

import (
	"fmt"
	"path/filepath"
	"regexp"
)

// DefaultRoot is where instances live unless --root says otherwise.
const DefaultRoot = "/var/gw"

// validName is what gw-instance lets an instance be called: it becomes a
// directory and a service name, so no dots, slashes or capitals.
var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// Dir is one instance's directory under its root.
type Dir struct {
	Root, Name string
}

// Choose checks name and returns the instance's directory under root. It
// does not look at the disk: a daemon started before its instance is
// complete reports what it misses itself, with the path.
func Choose(root, name string) (Dir, error) {
	if !validName.MatchString(name) {
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
