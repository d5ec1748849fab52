package runtimetune

import (
	"slices"
	"testing"
)

func TestWithSetting(t *testing.T) {
	for _, c := range []struct {
		env  []string
		want []string // nil: nothing to do
	}{
		{[]string{"PATH=/bin"}, []string{"PATH=/bin", "GODEBUG=" + Setting}},
		{[]string{"GODEBUG=", "A=b"}, []string{"GODEBUG=" + Setting, "A=b"}},
		{[]string{"GODEBUG=madvdontneed=1"}, []string{"GODEBUG=madvdontneed=1," + Setting}},
		// the runtime reads the first GODEBUG only: the second goes
		{[]string{"GODEBUG=gctrace=1", "GODEBUG=schedtrace=5"}, []string{"GODEBUG=gctrace=1," + Setting}},
		// already set, by the first start or by the sysadmin: kept
		{[]string{"GODEBUG=" + Setting}, nil},
		{[]string{"GODEBUG=gctrace=1, schedtrace=0"}, nil},
		{[]string{"GODEBUG=schedtrace"}, nil},
	} {
		got, ok := withSetting(c.env)
		if ok != (c.want != nil) || ok && !slices.Equal(got, c.want) {
			t.Errorf("withSetting(%q) = %q, %v; want %q", c.env, got, ok, c.want)
		}
		if !ok && !slices.Equal(got, c.env) {
			t.Errorf("withSetting(%q) changed it to %q with nothing to do", c.env, got)
		}
	}
}
