package scan

import (
	"fmt"
	"strings"
)

// Action is what gw-scan does with a message, for one recipient.
type Action int

// Actions, weakest first: for one recipient the strongest action of all
// classes the message falls into wins.
const (
	Pass       Action = iota // deliver as is (the information headers only)
	Tag                      // deliver with X-Spam-Flag or X-GW-Alert
	Discard                  // accept and drop
	Quarantine               // accept and keep in the quarantine directory
	Tempfail                 // refuse for now: the client retries (class fail)
	Reject                   // refuse for good: 554 at DATA, no bounce
)

var actionNames = []string{"pass", "tag", "discard", "quarantine", "tempfail", "reject"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// ParseAction reads an action name.
func ParseAction(s string) (Action, error) {
	for i, n := range actionNames {
		if s == n {
			return Action(i), nil
		}
	}
	return 0, fmt.Errorf("unknown action %q", s)
}

// classes in the order a log line names them, strongest first.
var classes = []string{ClassVirus, ClassBanned, ClassBomb, ClassSpamKill, ClassSpam, ClassBadMIME, ClassFail}

// DefaultActions is the policy when control/scanpolicy says nothing:
// viruses, banned attachments and MIME bombs are refused, spam is tagged,
// mail over spamkill is refused, MIME whose structure readers may see
// differently is held for a person to look at (passing it would let
// through what the rules could not see), and a scanner that is down makes
// mail wait.
var DefaultActions = map[string]Action{
	ClassVirus:    Reject,
	ClassBanned:   Reject,
	ClassBomb:     Reject,
	ClassSpamKill: Reject,
	ClassSpam:     Tag,
	ClassBadMIME:  Quarantine,
	ClassFail:     Tempfail,
}

// Policy maps a recipient's domain and a class to an action.
type Policy struct {
	rules map[string]map[string]Action // domain ("" default, ".sfx" parents) → class → action
}

// ParsePolicy reads control/scanpolicy: lines "domain:class:action", an
// empty domain being the default for every domain, a domain beginning with
// '.' matching its subdomains (as smtproutes). Classes: virus, banned, bomb,
// spamkill, spam, badmime, fail. Actions: pass, tag, discard, quarantine,
// reject; for fail, tempfail or pass (tag). A bad line is an error, never
// skipped: a typo must not open the gateway.
func ParsePolicy(lines []string) (*Policy, error) {
	p := &Policy{rules: map[string]map[string]Action{}}
	for i, l := range lines {
		f := strings.Split(l, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("scanpolicy line %d: want domain:class:action: %q", i+1, truncate(l, 80))
		}
		dom, class, act := strings.ToLower(strings.TrimSpace(f[0])), strings.TrimSpace(f[1]), strings.TrimSpace(f[2])
		if _, ok := DefaultActions[class]; !ok {
			return nil, fmt.Errorf("scanpolicy line %d: unknown class %q", i+1, truncate(class, 40))
		}
		a, err := ParseAction(act)
		if err != nil {
			return nil, fmt.Errorf("scanpolicy line %d: %v", i+1, err)
		}
		if a == Tempfail && class != ClassFail {
			return nil, fmt.Errorf("scanpolicy line %d: tempfail is for class fail only", i+1)
		}
		if class == ClassFail && a != Tempfail && a != Pass && a != Tag {
			return nil, fmt.Errorf("scanpolicy line %d: class fail takes tempfail, pass or tag", i+1)
		}
		if p.rules[dom] == nil {
			p.rules[dom] = map[string]Action{}
		}
		p.rules[dom][class] = a
	}
	return p, nil
}

// Action returns the action for class and recipient rcpt: the rule of its
// domain, else of the nearest ".parent", else the default line, else
// DefaultActions.
func (p *Policy) Action(rcpt, class string) Action {
	dom := ""
	if i := strings.LastIndexByte(rcpt, '@'); i >= 0 {
		dom = strings.ToLower(rcpt[i+1:])
	}
	if p != nil {
		if a, ok := p.rules[dom][class]; ok && dom != "" {
			return a
		}
		for d := dom; d != ""; {
			i := strings.IndexByte(d, '.')
			if i < 0 {
				break
			}
			d = d[i+1:]
			if a, ok := p.rules["."+d][class]; ok {
				return a
			}
		}
		if a, ok := p.rules[""][class]; ok {
			return a
		}
	}
	return DefaultActions[class]
}

// Decide returns the action for each recipient of a message that falls
// into the given classes: the strongest action among them.
func (p *Policy) Decide(rcpts []string, found []string) []Action {
	out := make([]Action, len(rcpts))
	for i, r := range rcpts {
		for _, c := range found {
			if a := p.Action(r, c); a > out[i] {
				out[i] = a
			}
		}
	}
	return out
}
