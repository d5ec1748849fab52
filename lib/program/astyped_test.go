package program

import "testing"

func TestAsTyped(t *testing.T) {
	for _, c := range []struct {
		msg  string
		args []string
		want string
	}{
		{"flag provided but not defined: -bogus", []string{"list", "--bogus"}, "flag provided but not defined: --bogus"},
		{"flag provided but not defined: -bogus", []string{"--bogus=1"}, "flag provided but not defined: --bogus"},
		{"flag provided but not defined: -x", []string{"-x"}, "flag provided but not defined: -x"},
		{"flag needs an argument: -queue", []string{"--queue"}, "flag needs an argument: --queue"},
		{`invalid value "x" for flag -mode: parse error`, []string{"--mode", "x"}, `invalid value "x" for flag --mode: parse error`},
		// Past "--" an argument is no option: the message stays as it was.
		{"flag provided but not defined: -bogus", []string{"--", "--bogus"}, "flag provided but not defined: -bogus"},
		{"some other error", []string{"--bogus"}, "some other error"},
	} {
		if got := asTyped(c.msg, c.args); got != c.want {
			t.Errorf("asTyped(%q, %q) = %q, want %q", c.msg, c.args, got, c.want)
		}
	}
}
