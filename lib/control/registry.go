package control

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Kind is how a control file is read.
type Kind int

// The kinds of control file.
const (
	KindLine Kind = iota // the first line (Dir.Line)
	KindInt              // the leading digits of the first line (Dir.Int)
	KindList             // every line but empty ones and comments (Dir.List)
	KindPEM              // a PEM file read whole (certificate and key)
	KindDir              // a directory of files
	KindText             // a file of its own syntax, read whole by its parser
)

var kindNames = []string{"line", "number", "list", "pem", "directory", "text"}

func (k Kind) String() string { return kindNames[k] }

// File is one control file as gw knows it.
type File struct {
	Name     string
	Kind     Kind
	Default  string   // the value a missing file means, as gw-control(5) words it
	Programs []string // the programs that read it
	Doc      string   // one line: what it sets
}

// Secret reports whether the file's value must not be printed.
func (f File) Secret() bool { return f.Name == "scansecret" || f.Name == "statebackendpassword" }

// The programs, as the registry names them.
const (
	smtpd    = "gw-smtpd"
	qmtpd    = "gw-qmtpd"
	send     = "gw-send"
	scan     = "gw-scan"
	instance = "gw-instance"
	dmarc    = "gw-dmarc"
)

// Registry is every control file a gw program reads, in name order. It is
// the one list: gw-instance config prints the settings from it,
// gw-control(5) documents it (a test keeps them in step), and a test
// drives every loader and checks that each file read, and each default
// given, is the one written here.
var Registry = sorted([]File{
	{"arcseal", KindLine, "none: no ARC seal", []string{smtpd}, "domain selector: the key among dkim/ that ARC-seals (gw-auth(5))"},
	{"authfailwindow", KindInt, "900", []string{smtpd}, "seconds over which maxauthfail counts an address's AUTH failures"},
	{"authservid", KindLine, "me", []string{smtpd}, "the authserv-id of Authentication-Results (gw-auth(5))"},
	{"backoffmin", KindInt, "60", []string{send}, "seconds before the first retry"},
	{"backoffmax", KindInt, "3600", []string{send}, "the longest wait between retries, seconds"},
	{"badmailfrom", KindList, "none", []string{smtpd}, "senders refused at MAIL (address, @domain or pattern)"},
	{"badrcptto", KindList, "none", []string{smtpd}, "recipients refused at RCPT"},
	{"bannedext", KindList, "exe com scr pif bat cmd cpl vbs vbe js jse wsf wsh hta lnk msi reg", []string{scan}, "attachment name extensions classed banned"},
	{"bannedtypes", KindList, "application/x-msdownload application/x-dosexec application/x-msdos-program", []string{scan}, "attachment content types classed banned"},
	{"bindir", KindLine, "the directory of gw-instance", []string{instance}, "where the run scripts find gw's programs"},
	{"bouncefrom", KindLine, "MAILER-DAEMON", []string{send}, "the local part of a bounce's sender"},
	{"bouncehost", KindLine, "me", []string{send}, "the domain of a bounce's sender"},
	{"bouncequeue", KindLine, "none: bounces go in the instance's own queue", []string{send, instance}, "the queue of the instance that sends this instance's bounces"},
	{"callouts", KindList, "none", []string{smtpd}, "domain:[host[:port]] lines: recipients verified at RCPT with that host"},
	{"calloutconnecttimeout", KindInt, "10", []string{smtpd}, "seconds a callout may take to connect"},
	{"calloutnegative", KindInt, "10800", []string{smtpd}, "seconds a refused callout answer is cached"},
	{"calloutpositive", KindInt, "604800", []string{smtpd}, "seconds an accepted callout answer is cached"},
	{"calloutsender", KindLine, "the null sender", []string{smtpd}, "the MAIL FROM of a callout"},
	{"callouttimeout", KindInt, "30", []string{smtpd}, "seconds a whole callout may take"},
	{"clamd", KindLine, "none: no virus scan", []string{scan}, "clamd's address: host:port, /path or unix:path"},
	{"clamdmaxbytes", KindInt, "26214400", []string{scan}, "larger messages are not sent to clamd"},
	{"concurrencydest", KindInt, "10", []string{send}, "deliveries at once to one destination"},
	{"concurrencyqmtp", KindInt, "64", []string{send}, "messages in flight on one QMTP connection"},
	{"concurrencyremote", KindInt, "20", []string{send}, "deliveries at once"},
	{"databytes", KindInt, "0", []string{smtpd, qmtpd, scan}, "the largest message accepted, bytes; 0: no limit"},
	{"delaywarning", KindInt, "0", []string{send}, "seconds after which the sender is told of a delay; 0: never"},
	{"danetrusted", KindList, "none: loopback only", []string{send}, "DNS servers, besides loopback, whose AD bit DANE believes"},
	{"dkim", KindDir, "none: nothing signed", []string{smtpd}, "signing keys, dkim/DOMAIN/SELECTOR.key, made by gw-dkim"},
	{"dkimmaxsignatures", KindInt, "5", []string{smtpd}, "DKIM signatures of one message checked"},
	{"dmarcforwarders", KindList, "none", []string{smtpd}, "forwarders whose mail DMARC does not judge when it fails"},
	{"dmarcreportfrom", KindLine, "postmaster@me", []string{dmarc}, "the From address of DMARC aggregate reports (gw-dmarc(8))"},
	{"dmarcpolicy", KindLine, "none: DMARC, DKIM and ARC not checked", []string{smtpd}, "enforce, quarantine or none (gw-auth(5))"},
	{"dmarcquarantine", KindLine, "hold", []string{smtpd}, "hold (in quarantine/, released by gw-scan) or tag what DMARC quarantines (gw-auth(5))"},
	{"dnsserver", KindLine, "the system's resolvers", []string{send}, "the DNS server for MX and address lookups, host:port"},
	{"doublebouncehost", KindLine, "me", []string{send}, "the domain of the double-bounce recipient"},
	{"doublebounceto", KindLine, "postmaster", []string{send}, "the local part of the double-bounce recipient"},
	{"environment", KindList, "none", []string{instance}, "KEY=VALUE lines the run scripts export"},
	{"greetdelay", KindInt, "0", []string{smtpd}, "seconds before the greeting; a client that talks first is refused"},
	{"greylistdelay", KindInt, "300", []string{smtpd}, "seconds a first try is greylisted"},
	{"greylistexpiry", KindInt, "172800", []string{smtpd}, "seconds a first try waits for its retry"},
	{"greylistwhitelist", KindInt, "3024000", []string{smtpd}, "seconds a client that retried passes"},
	{"helohost", KindLine, "me", []string{send}, "the name gw-send gives in HELO/EHLO"},
	{"listeners", KindList, "none", []string{instance, send}, "face proto address [acl [args]]: the instance's listeners"},
	{"lmtproutes", KindList, "none", []string{send}, "domain:host:port routes over LMTP"},
	{"localiphost", KindLine, "me", []string{smtpd}, "the name for a recipient at the server's own [IP]"},
	{"maxauthfail", KindInt, "10", []string{smtpd}, "AUTH failures an address may have in authfailwindow"},
	{"maxbadrcpt", KindInt, "50", []string{smtpd}, "refused recipients before a session is dropped"},
	{"maxerrors", KindInt, "10", []string{smtpd}, "errors before a session is dropped"},
	{"maxjunk", KindInt, "100", []string{smtpd}, "NOOP, RSET, VRFY and HELP a session may give between messages; 0: no limit"},
	{"maxsessiontime", KindInt, "3600", []string{smtpd}, "seconds a session may last; 0: no limit"},
	{"maxrcpt", KindInt, "1000", []string{smtpd}, "recipients a message"},
	{"me", KindLine, "none: required", []string{smtpd, qmtpd, send, scan, instance}, "the host's name"},
	{"mindatarate", KindInt, "500", []string{smtpd}, "bytes a second a message must come at; 0: only timeoutsmtpd"},
	{"milters", KindText, "none", []string{smtpd}, "the milters each session and message go through, in order (gw-milters(5))"},
	{"mimemaxdepth", KindInt, "20", []string{scan}, "MIME nesting deeper than this is classed bomb"},
	{"mimemaxparts", KindInt, "1000", []string{scan}, "more MIME parts than this are classed bomb"},
	{"moreipme", KindList, "none", []string{send}, "more addresses of this host"},
	{"morercpthosts", KindList, "none", []string{smtpd, qmtpd}, "more domains mail is accepted for"},
	{"notipme", KindList, "none", []string{send}, "addresses of this host that are not it (NAT)"},
	{"qmtproutes", KindList, "none", []string{send, instance}, "domain:host:port routes over QMTP"},
	{"queuelifetime", KindInt, "604800", []string{send}, "seconds a message may wait before it bounces"},
	{"rblzones", KindList, "none", []string{smtpd}, "DNS blocklists asked at RCPT"},
	{"rcpthosts", KindList, "none: no domain", []string{smtpd, qmtpd, instance}, "domains mail is accepted for"},
	{"recipients", KindDir, "none: every recipient", []string{smtpd}, "a file a domain listing its valid recipients"},
	{"rspamd", KindLine, "none: no rspamd", []string{scan}, "rspamd's normal worker: host:port, /path or unix:path"},
	{"rspamdmaxbytes", KindInt, "20971520", []string{scan}, "larger messages are not sent to rspamd"},
	{"scan", KindList, "none", []string{instance}, "the faces whose messages go through gw-scan"},
	{"scaneicar", KindInt, "1", []string{scan}, "0 turns the built-in EICAR rule off"},
	{"scanpolicy", KindList, "built in", []string{scan}, "domain:class:action lines"},
	{"scansecret", KindLine, "none", []string{scan}, "the secret of the scanned-once token, 16 bytes or more"},
	{"scantimeout", KindInt, "30", []string{scan}, "seconds each exchange with clamd or spamd may take"},
	{"servercert.pem", KindPEM, "none: no STARTTLS", []string{smtpd}, "the server's certificate chain and key"},
	{"smtpgreeting", KindLine, "me", []string{smtpd}, "the greeting after 220"},
	{"smtpport", KindInt, "25", []string{send}, "the port of MX hosts"},
	{"smtproutes", KindList, "none", []string{send, smtpd}, "domain:host:port routes over SMTP"},
	{"spfpolicy", KindLine, "none", []string{smtpd}, "none, tag or refuse: SPF at MAIL (gw-auth(5))"},
	{"spamd", KindLine, "none: no spam check", []string{scan}, "spamd's address"},
	{"spamdmaxbytes", KindInt, "512000", []string{scan}, "larger messages are not sent to spamd"},
	{"spamkill", KindLine, "none", []string{scan}, "a score at or over this is classed spamkill"},
	{"statebackend", KindLine, "none: each host keeps its own state", []string{smtpd, qmtpd}, "redis:// or rediss:// server shared by a fleet (gw-state(5))"},
	{"statebackendca", KindLine, "none: the system's roots", []string{smtpd, qmtpd}, "a PEM file of the roots a rediss:// server is verified against"},
	{"statebackendpassword", KindLine, "none", []string{smtpd, qmtpd}, "the shared state server's password (never printed)"},
	{"statebackendprefix", KindLine, "gw:", []string{smtpd, qmtpd}, "the key prefix of this group of hosts"},
	{"supervisor", KindLine, "runit", []string{instance}, "runit or daemontools: the run scripts' flavour"},
	{"timeoutconnect", KindInt, "60", []string{send}, "seconds a connection may take"},
	{"timeoutqmtpd", KindInt, "1200", []string{qmtpd}, "seconds each read and write of gw-qmtpd may take"},
	{"timeoutremote", KindInt, "1200", []string{send}, "seconds each read and write of gw-send may take"},
	{"timeoutsmtpd", KindInt, "1200", []string{smtpd}, "seconds each read and write of gw-smtpd may take"},
	{"tlscafile", KindLine, "none: the system's roots", []string{send}, "a PEM file of the roots verify and secure trust"},
	{"tlslevel", KindLine, "may, or none with tlsremote 0", []string{send}, "the TLS level of destinations tlspolicy does not name"},
	{"tlspolicy", KindText, "none", []string{send}, "per-destination TLS levels (gw-tlspolicy(5))"},
	{"tlsremote", KindInt, "1", []string{send}, "0 turns STARTTLS to remote hosts off"},
	{"users", KindList, "none: gw's default users", []string{instance}, "daemon=user lines"},
})

func sorted(fs []File) []File {
	sort.Slice(fs, func(i, j int) bool { return fs[i].Name < fs[j].Name })
	return fs
}

// Lookup returns the registry's entry for name.
func Lookup(name string) (File, bool) {
	i := sort.Search(len(Registry), func(i int) bool { return Registry[i].Name >= name })
	if i < len(Registry) && Registry[i].Name == name {
		return Registry[i], true
	}
	return File{}, false
}

// Setting is one control file's setting in a directory.
type Setting struct {
	File
	Set   bool   // the file exists
	Value string // as the programs read it, or the default
}

// Settings returns every registered setting of d, in name order: the value
// read from its file, or its default; a default of "me" is shown as the
// host's name it stands for. A file that cannot be read is an error, as it
// is to the programs.
func (d Dir) Settings() ([]Setting, error) {
	me, hasMe, err := d.line("me")
	if err != nil {
		return nil, err
	}
	out := make([]Setting, 0, len(Registry))
	for _, f := range Registry {
		s := Setting{File: f, Value: f.Default}
		var err error
		switch f.Kind {
		case KindLine, KindInt:
			var v string
			if v, s.Set, err = d.line(f.Name); s.Set && f.Kind == KindInt {
				n := leadingInt(v, -1)
				if n < 0 {
					v = f.Default + " (" + strings.TrimSpace(v) + " is not a number)"
				} else {
					v = fmt.Sprint(n)
				}
			}
			if s.Set {
				s.Value = v
			}
		case KindList:
			var l []string
			if l, s.Set, err = d.listRaw(f.Name); s.Set {
				s.Value = strings.Join(l, ", ")
			}
		case KindPEM, KindDir, KindText:
			s.Set, err = d.exists(f.Name)
			if s.Set {
				s.Value = "present"
			}
		}
		if err != nil {
			return nil, err
		}
		if !s.Set && f.Default == "me" && hasMe {
			s.Value = me
		}
		if s.Set && f.Secret() {
			s.Value = "(set, not shown)"
		}
		out = append(out, s)
	}
	return out, nil
}

func (d Dir) listRaw(name string) ([]string, bool, error) {
	b, ok, err := d.read(name)
	if !ok || err != nil {
		return nil, ok, err
	}
	return parseList(b), true, nil
}

// observer, when set, hears of every control file read through a Dir,
// with its kind and the default the reader gave (numbers only). Only the
// registry's test sets it.
var (
	observeMu sync.Mutex
	observer  func(name string, kind Kind, def string)
)

// Observe makes fn hear of every control file read from now on, until
// it is called again with nil. It lets a test drive the loaders and hold
// them to the registry.
func Observe(fn func(name string, kind Kind, def string)) {
	observeMu.Lock()
	defer observeMu.Unlock()
	observer = fn
}

func note(name string, kind Kind, def string) {
	observeMu.Lock()
	fn := observer
	observeMu.Unlock()
	if fn != nil {
		fn(name, kind, def)
	}
}

func (d Dir) exists(name string) (bool, error) {
	_, err := os.Stat(filepath.Join(string(d), name))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("control/%s: %w", name, err)
	}
	return true, nil
}
