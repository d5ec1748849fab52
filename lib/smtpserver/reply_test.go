package smtpserver

import "testing"

// R takes a reply whose enhanced code is of its class, and panics on a
// typo in a reply table: wrong class, a part missing, too long or not
// digits.
func TestRChecksEnhancedCode(t *testing.T) {
	for _, ok := range []struct {
		code int
		enh  string
	}{{250, "2.0.0"}, {421, "4.7.0"}, {554, "5.7.1"}, {550, "5.123.999"}} {
		if r := R(ok.code, ok.enh, "x"); r.Line() != r.Error() || r.Code != ok.code {
			t.Errorf("R(%d, %q) = %+v", ok.code, ok.enh, r)
		}
	}
	for _, bad := range []struct {
		code int
		enh  string
	}{{250, "5.0.0"}, {250, "2.0"}, {250, "2.0.0.0"}, {250, "2..0"}, {250, "2.1234.0"}, {250, "2.x.0"},
		{250, "2.-1.0"}, {250, "22.0.0"}, {199, "1.0.0"}, {600, "6.0.0"}, {250, ""}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("R(%d, %q) did not panic", bad.code, bad.enh)
				}
			}()
			R(bad.code, bad.enh, "x")
		}()
	}
}
