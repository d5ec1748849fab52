package logline

import (
	"fmt"
	"testing"
)

func TestFormat(t *testing.T) {
	cases := []struct {
		name string
		kv   []any
		want string
	}{
		{"plain", []any{"qid", "0669a1b2c3d4e", "size", 10240}, "info ev qid=0669a1b2c3d4e size=10240\n"},
		{"space", []any{"err", "no such file"}, "info ev err=\"no such file\"\n"},
		{"empty", []any{"from", ""}, "info ev from=\"\"\n"},
		{"control bytes", []any{"helo", "a\r\nb\x00"}, "info ev helo=\"a\\r\\nb\\x00\"\n"},
		{"equals", []any{"x", "a=b"}, "info ev x=\"a=b\"\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Format("info", "ev", c.kv...); got != c.want {
				t.Errorf("Format(%q) = %q, want %q", c.kv, got, c.want)
			}
		})
	}
}

// The kinds toString formats itself read as fmt would print them.
func TestToStringAsFmt(t *testing.T) {
	for _, v := range []any{true, false, 0, -7, int64(-1 << 40), uint64(1 << 63), uint32(4e9), uint16(25), 3.5, nil, []string{"a"}} {
		if got, want := toString(v), fmt.Sprint(v); got != want {
			t.Errorf("toString(%#v) = %q, want %q", v, got, want)
		}
	}
}
