package ratelimit

import (
	"errors"
	"strings"
	"testing"
	"time"

	"gw/lib/state"
)

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{
		"30/60":   {30, time.Minute},
		"30/60s":  {30, time.Minute},
		"100/1h":  {100, time.Hour},
		" 5/10m ": {5, 10 * time.Minute},
	} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "30", "0/60s", "-1/60s", "30/0", "30/-5s", "30/500ms", "30/9999h", "x/60s", "30/1y"} {
		if r, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) = %v, want an error", in, r)
		}
	}
}

func TestFromEnvKeepsTheGoodLimits(t *testing.T) {
	env := map[string]string{"RATE_CONN": "3/60s", "RATE_MSG": "lots", "RATE_BY": "net"}
	r, err := FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err == nil || !strings.Contains(err.Error(), "RATE_MSG") {
		t.Errorf("err = %v, want one naming RATE_MSG", err)
	}
	if r.Conn != (Rate{3, time.Minute}) || r.Msg.Set() || !r.ByNet {
		t.Errorf("rules = %+v", r)
	}
}

func TestWho(t *testing.T) {
	for _, c := range []struct {
		ip    string
		byNet bool
		want  string
	}{
		{"192.0.2.7", false, "ip:192.0.2.7"},
		{"192.0.2.7", true, "net:192.0.2.0/24"},
		{"::ffff:192.0.2.7", true, "net:192.0.2.0/24"},
		{"2001:db8:1:2:3::9", true, "net:2001:db8:1:2::/64"},
	} {
		if got := Who(c.ip, c.byNet); got != c.want {
			t.Errorf("Who(%q, %v) = %q, want %q", c.ip, c.byNet, got, c.want)
		}
	}
}

// downStore is a shared store that cannot be reached.
type downStore struct{}

func (downStore) Count(string, time.Duration) (int64, time.Time, error) {
	return 0, time.Time{}, state.ErrDown
}
func (downStore) Get(string) ([]byte, bool, error)        { return nil, false, state.ErrDown }
func (downStore) Put(string, []byte, time.Duration) error { return errors.New("down") }
func (downStore) Close() error                            { return nil }

func TestLimiterCountsLocallyWhenTheStoreIsDown(t *testing.T) {
	l := &Limiter{Store: downStore{}, Local: &state.Memory{}}
	r := Rate{2, time.Minute}
	for i, over := range []bool{false, false, true} {
		v := l.Take(Msg, "ip:192.0.2.1", r)
		if v.Over != over || !v.Local {
			t.Errorf("take %d: %+v, want over=%v counted locally", i+1, v, over)
		}
	}
}

func TestBanAfterRepeatedRefusals(t *testing.T) {
	l := &Limiter{Store: &state.Memory{}, Local: &state.Memory{}}
	ban := Rate{2, time.Hour}
	if l.Refused("ip:192.0.2.1", ban) {
		t.Fatal("banned after one refusal")
	}
	if !l.Refused("ip:192.0.2.1", ban) {
		t.Fatal("not banned after two")
	}
	until, ok := l.Banned("ip:192.0.2.1")
	if !ok || time.Until(until) < 59*time.Minute {
		t.Errorf("Banned = %v, %v", until, ok)
	}
	if _, ok := l.Banned("ip:192.0.2.2"); ok {
		t.Error("another client is banned")
	}
	if (&Limiter{Local: &state.Memory{}}).Refused("ip:192.0.2.1", Rate{}) {
		t.Error("banned with no RATE_BAN")
	}
}
