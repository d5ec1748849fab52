package instance

import (
	"os"
	"slices"
)

// SetScan puts gw-scan(8) in front of the queue (as QMAILQUEUE) of the
// SMTP faces named, of every SMTP face when none is named, and rewrites
// the service directories. off takes it away from every face. A face's
// smtpd service reads its new environment when it is restarted.
func (in *Instance) SetScan(faces []string, off bool) error {
	path := in.Path("control", "scan")
	if off {
		if len(faces) > 0 {
			return usagef("scan --off takes no face")
		}
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return err
		}
		return in.WriteServices()
	}
	ls, err := in.Listeners()
	if err != nil {
		return err
	}
	var smtp []string
	for _, l := range ls {
		if l.Proto == "smtp" {
			smtp = append(smtp, l.Face)
		}
	}
	if len(faces) == 0 {
		faces = smtp
	}
	if len(faces) == 0 {
		return usagef("instance %s has no SMTP listener to scan for", in.Name)
	}
	for _, f := range faces {
		if !slices.Contains(smtp, f) {
			return usagef("instance %s has no SMTP face %q (gw-scan checks SMTP faces only)", in.Name, f)
		}
	}
	if err := writeFile(path, scanHeader+lines(faces), 0o644); err != nil {
		return err
	}
	return in.WriteServices()
}
