// Package sessiontest is gw-smtpd's session test (--test-session, as
// exim -bh): one SMTP session read from a script, for a client address
// the admin names, through the listener's whole policy: the ACL rule
// that address gets, the checks at MAIL and RCPT, the milters and the
// scan at the end of DATA. Every decision is told in words, and nothing
// is queued, held or counted: the injector it gives the session only
// judges the message (Injector), and the state the listener would write
// (greylist triplets, rate counts, callout answers) is left alone by the
// configuration gw-smtpd builds for it.
package sessiontest
