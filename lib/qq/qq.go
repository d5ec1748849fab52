// Package qq holds the qmail-queue exit codes: what each means, whether it
// is permanent, and the reply text a listener gives for it, as qmail's
// qmail_close does. Every program that runs or serves a queue injector uses
// this one table.
package qq

// Exit codes of qmail-queue(8). 0 is success, 11–40 permanent, anything
// else temporary.
const (
	OK             = 0
	AddressTooLong = 11
	// BadAddress is gw's own: an envelope address with a control
	// character, or that no SMTP path can carry (mailbox.Check). It is
	// permanent, as 11 to 40 are, so qmail's own callers bounce it too.
	BadAddress        = 12
	Refused           = 31
	OutOfMemory       = 51
	Timeout           = 52
	WriteError        = 53
	ReadError         = 54
	ConfigError       = 55
	NetworkError      = 56
	HomeTrouble       = 61
	QueueTrouble      = 62
	MessTrouble       = 64
	TodoTrouble       = 66
	TemporaryRefusal  = 71
	ConnectTimeout    = 72
	ConnectRejected   = 73
	CommunicationLost = 74
	InternalBug       = 81
	BadEnvelope       = 91
)

// Permanent reports whether code is a permanent failure (11 to 40).
func Permanent(code int) bool { return code >= 11 && code <= 40 }

// Reply returns the text qmail gives a caller for code, with its enhanced
// status code; a listener prefixes 554 (permanent) or 451 (temporary).
// Unknown codes read as temporary, as qmail_close reads them.
func Reply(code int) string {
	switch code {
	case OK:
		return "ok"
	case AddressTooLong, 115:
		return "envelope address too long for qq (#5.1.3)"
	case BadAddress:
		return "envelope address has bad syntax for qq (#5.1.3)"
	case Refused:
		return "mail server permanently rejected message (#5.3.0)"
	case OutOfMemory:
		return "qq out of memory (#4.3.0)"
	case Timeout:
		return "qq timeout (#4.3.0)"
	case WriteError:
		return "qq write error or disk full (#4.3.0)"
	case ReadError:
		return "qq read error (#4.3.0)"
	case ConfigError:
		return "qq unable to read configuration (#4.3.0)"
	case NetworkError:
		return "qq trouble making network connection (#4.3.0)"
	case HomeTrouble:
		return "qq trouble in home directory (#4.3.0)"
	case QueueTrouble, 63, MessTrouble, 65, TodoTrouble:
		return "qq trouble creating files in queue (#4.3.0)"
	case TemporaryRefusal:
		return "mail server temporarily rejected message (#4.3.0)"
	case ConnectTimeout:
		return "connection to mail server timed out (#4.4.1)"
	case ConnectRejected:
		return "connection to mail server rejected (#4.4.1)"
	case CommunicationLost:
		return "communication with mail server failed (#4.4.2)"
	case InternalBug, BadEnvelope:
		return "qq internal bug (#4.3.0)"
	}
	if Permanent(code) {
		return "qq permanent problem (#5.3.0)"
	}
	return "qq temporary problem (#4.3.0)"
}
