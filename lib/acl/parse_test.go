package acl

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseLine(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *Rule  // nil: passed over in silence, unless err is set
		err  string // a part of the refusal's reason
	}{
		{"plain allow", "1.2.3.4:allow\n", &Rule{Address: "1.2.3.4"}, ""},
		{"deny keeps items", "1.2.3.4:deny,X=\"y\"\n", &Rule{Address: "1.2.3.4", Deny: true, Env: []string{"X=y"}}, ""},
		{"any quote byte", "1:allow,A='s',B=/x/,C=xa,b:c dx\n", &Rule{Address: "1", Env: []string{"A=s", "B=x", "C=a,b:c d"}}, ""},
		{"equals in value", "1:allow,EQ=\"a=b=c\",E=\"\"", &Rule{Address: "1", Env: []string{"EQ=a=b=c", "E="}}, ""},
		{"name set twice", "1:allow,D=\"1\",D=\"2\"", &Rule{Address: "1", Env: []string{"D=1", "D=2"}}, ""},
		{"empty name", "1:allow,=\"v\"", &Rule{Address: "1", Env: []string{"=v"}}, ""},
		{"blank quote mid-line", "1:allow,A= x ,B=\"y\"", &Rule{Address: "1", Env: []string{"A=x", "B=y"}}, ""},
		{"trailing blanks stripped", "1.2.3.4:allow   \t \n", &Rule{Address: "1.2.3.4"}, ""},
		{"default rule", ":deny\n", &Rule{Address: "", Deny: true}, ""},
		{"leading blank kept", " 1.1.1.5:deny", &Rule{Address: " 1.1.1.5", Deny: true}, ""},
		{"indented hash is a rule", "  # x:deny", &Rule{Address: "  # x", Deny: true}, ""},
		{"colon in value", "1:allow,A=\"x:deny\"", &Rule{Address: "1", Env: []string{"A=x:deny"}}, ""},
		{"ipv6 exact", "2001:db8::1:allow", &Rule{Address: "2001:db8::1"}, ""},
		{"ipv6 loses a colon", "2001:db8::allow", &Rule{Address: "2001:db8:"}, ""},
		{"ipv6 info", "joe@::1:deny", &Rule{Address: "joe@::1", Deny: true}, ""},
		{"ipv6 cidr", "2001:db8::/32:allow", &Rule{Address: "2001:db8::/32"}, ""},
		{"cidr v4", "10.0.0.0/8:allow,RELAYCLIENT=\"\"", &Rule{Address: "10.0.0.0/8", Env: []string{"RELAYCLIENT="}}, ""},

		{"comment", "# x:deny\n", nil, ""},
		{"empty line", "\n", nil, ""},
		{"blank line", "  \t\n", nil, ""},
		{"no colon", "garbage line without colon\n", nil, ""},

		{"bad verb", "1.2.3.4:denied\n", nil, "first colon is not followed by allow or deny"},
		{"verb with tail", "1.2.3.4:denyx\n", nil, "after deny comes \"x\""},
		{"upper case verb", "1.2.3.4:Allow\n", nil, "lower case"},
		{"blank before verb", "1.2.3.4 : allow\n", nil, "blank between"},
		{"no equals", "1.2.3.4:allow,FOO\n", nil, "has no \"=\""},
		{"no value", "1.2.3.4:allow,FOO=\n", nil, "FOO= has no value"},
		{"unterminated", "1.2.3.4:allow,FOO=\"bar\n", nil, "no closing \""},
		{"blank quote at end", "1.2.3.4:allow,A= x \n", nil, "no closing byte 0x20"},
		{"space not comma", "1.2.3.4:allow FOO=\"bar\"\n", nil, "after allow comes \" FOO"},
		{"trailing comma", "1.2.3.4:allow,\n", nil, "nothing follows the last comma"},
		{"missing comma", "1:allow,FOO=\"x\"BAR=\"y\"", nil, "after the value of FOO"},
		{"carriage return", "1.2.3.4:allow\r\n", nil, "carriage return"},
		{"bad range", "1.2.3.x-5:deny\n", nil, "low bound \"x\""},
		{"bad high bound", "1.2.3.4-5-6:deny\n", nil, "high bound \"5-6\""},
		{"cidr host bits", "10.1.2.3/8:deny", nil, "write 10.0.0.0/8"},
		{"first colon wrong, not ipv6", "1.2.3.4:foo:allow", nil, "first colon"},
		{"word before later verb", "host:x:deny", nil, "first colon"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := ParseLine(7, []byte(tc.in))
			if tc.err != "" {
				var pe *ParseError
				if !errors.As(err, &pe) || pe.Line != 7 || !strings.Contains(pe.Reason, tc.err) {
					t.Fatalf("ParseLine(%q) = %+v, %v, %v; want a line 7 error about %q", tc.in, got, ok, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseLine(%q): %v", tc.in, err)
			}
			if tc.want == nil {
				if ok {
					t.Fatalf("ParseLine(%q) = %+v; want it passed over", tc.in, got)
				}
				return
			}
			want := *tc.want
			want.Line, want.Text = 7, strings.TrimRight(tc.in, "\n \t")
			if !ok || !reflect.DeepEqual(got, want) {
				t.Fatalf("ParseLine(%q)\ngot  %+v (ok %v)\nwant %+v", tc.in, got, ok, want)
			}
		})
	}
}

func TestParseLineNumbers(t *testing.T) {
	in := "# head\n\n1.2.3.4:allow\ngarbage\n:deny\n5:allow,X=\"unterminated\n6:allow\n"
	var lines []int
	err := Parse(strings.NewReader(in), func(r Rule) error {
		lines = append(lines, r.Line)
		return nil
	})
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 6 {
		t.Fatalf("Parse(%q) error %v; want line 6", in, err)
	}
	if want := []int{3, 5}; !reflect.DeepEqual(lines, want) {
		t.Errorf("Parse(%q) emitted lines %v; want %v", in, lines, want)
	}
	if !strings.HasPrefix(pe.Error(), "unable to parse line 6: ") {
		t.Errorf("message %q does not name line 6", pe.Error())
	}
}

func TestParseLastLineWithoutNewline(t *testing.T) {
	var got []Rule
	err := Parse(strings.NewReader("1:allow\n2:deny"), func(r Rule) error {
		got = append(got, r)
		return nil
	})
	if err != nil || len(got) != 2 || got[1].Address != "2" || !got[1].Deny {
		t.Fatalf("got %+v, %v; want the unterminated last line parsed", got, err)
	}
}

func TestParseLongLine(t *testing.T) {
	in := strings.Repeat("x", MaxLineBytes+10) + ":allow\n"
	err := Parse(strings.NewReader(in), func(Rule) error { return nil })
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 1 {
		t.Fatalf("Parse(long line) = %v; want a line 1 error", err)
	}
}

func TestExpandAddress(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		cidr string
		warn bool
	}{
		{"1.2.3.4", []string{"1.2.3.4"}, "", false},
		{"1.2.3.1-3", []string{"1.2.3.1", "1.2.3.2", "1.2.3.3"}, "", false},
		{"10.1-2.", []string{"10.1.", "10.2."}, "", false},
		{"1-2.3-4.", []string{"1.3-4.", "2.3-4."}, "", false},
		{"5.5.5.253-300", []string{"5.5.5.253", "5.5.5.254", "5.5.5.255"}, "", false},
		{"6.6.6.9-2", []string{}, "", true},
		{"1.2.3.-1", []string{"1.2.3.0", "1.2.3.1"}, "", false},
		{"1.2.3.4-", []string{}, "", true},
		{"1.2.3.001-2", []string{"1.2.3.1", "1.2.3.2"}, "", false},
		{"1.2.3.1-18446744073709551617", []string{"1.2.3.1"}, "", false}, // wraps to 1
		{"joe@8.8.8.1-3", []string{"joe@8.8.8.1-3"}, "", false},
		{"=a-b.example", []string{"=a-b.example"}, "", false},
		{"10.0.0.0/8", nil, "10.0.0.0/8", false},
		{"2001:DB8::/32", nil, "2001:db8::/32", false},
		{"10.0.0/8", []string{"10.0.0/8"}, "", true},
	}
	for _, tc := range tests {
		k, err := ExpandAddress(tc.in)
		if err != nil {
			t.Errorf("ExpandAddress(%q): %v", tc.in, err)
			continue
		}
		cidr := ""
		if k.IsCIDR() {
			cidr = k.Prefix.String()
		}
		if !reflect.DeepEqual(k.Literal, tc.want) || cidr != tc.cidr || (k.Warning != "") != tc.warn {
			t.Errorf("ExpandAddress(%q) = %q, %q, warning %q; want %q, %q, warning %v", tc.in, k.Literal, cidr, k.Warning, tc.want, tc.cidr, tc.warn)
		}
	}
}
