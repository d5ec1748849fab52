package smtpd

import (
	"strings"

	"gw/lib/smtpserver"
)

// Every reply gw-smtpd gives is one of these values, one of the core's
// (lib/smtpserver) or made by reply(): a basic and an enhanced code and
// a generic text. Details of a refusal go to the log, never to the
// client.
var (
	errNestedMail    = smtpserver.ErrNestedMail
	errUnimplemented = smtpserver.ErrUnimplemented
	errLocal         = smtpserver.ErrLocal
	errAuthMech      = smtpserver.ErrAuthMech
	errAuthSyntax    = smtpserver.ErrAuthSyntax
	errAuthFailed    = smtpserver.ErrAuthFailed
	errTLSFirst      = smtpserver.ErrTLSFirst
	errAuthDone      = smtpserver.ErrAuthDone

	errNoSpace     = reply(452, "4.3.1", "insufficient system storage")
	errBadSender   = reply(553, "5.1.7", "bad sender address syntax")
	errBadRcpt     = reply(501, "5.1.3", "bad recipient address syntax")
	errQuotedRcpt  = reply(553, "5.1.3", "quoted local parts are not accepted")
	errNonASCII    = reply(553, "5.6.7", "non-ASCII address without SMTPUTF8")
	errAddrTooLong = reply(501, "5.1.3", "address too long")
	errTooManyBad  = reply(421, "4.7.0", "too many rejected recipients, closing connection")
	errNoRelay     = reply(553, "5.7.1", "sorry, that domain isn't in my list of allowed rcpthosts")
	errRouted      = reply(553, "5.7.1", "sender-specified routing is not allowed")
	errBadMailFrom = reply(553, "5.7.1", "sorry, your envelope sender is in my badmailfrom list")
	errBadRcptTo   = reply(553, "5.7.1", "sorry, that recipient is in my badrcptto list")
	errUnknownUser = reply(550, "5.1.1", "no such user here")
	errUnverified  = reply(450, "4.1.1", "unable to verify the recipient now, try again later")
	errGreylisted  = reply(451, "4.7.1", "greylisted, please try again later")
	errLooping     = reply(554, "5.4.6", "too many hops, this message is looping")
	errNoInjector  = reply(451, "4.3.0", "unable to start the queue")
	errAuthTemp    = reply(454, "4.7.0", "temporary authentication failure")
	errTooManyAuth = reply(421, "4.7.0", "too many authentication failures, closing connection")
	errPregreet    = reply(554, "5.5.0", "SMTP protocol synchronization error, talk after the greeting")
	errAuthBlocked = reply(421, "4.7.0", "too many authentication failures from your address, closing connection")
)

// reply builds a reply from its code, enhanced code ("x.y.z") and text.
func reply(code int, enhanced, text string) *smtpserver.Reply {
	return smtpserver.R(code, enhanced, text)
}

// queueReply turns qmail-queue's reply text for an exit code, which ends
// in "(#x.y.z)", into a 554 (permanent) or 451 reply with that code.
func queueReply(permanent bool, text string) *smtpserver.Reply {
	code, enh := 451, "4.3.0"
	if permanent {
		code, enh = 554, "5.3.0"
	}
	if i := strings.LastIndex(text, " (#"); i >= 0 && strings.HasSuffix(text, ")") {
		e := text[i+3 : len(text)-1]
		if len(e) == 5 && (e[0] == '4' && !permanent || e[0] == '5' && permanent) {
			enh = e
		}
		text = text[:i]
	}
	return reply(code, enh, text)
}
