package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"gw/tests/internal/rspamdtest"
)

// rspamdProbe is one path through rspamd, started anew, relaying to the
// sink given, for the decision probe.
type rspamdProbe struct {
	name  string
	start func(sink string) (*side, func(), error)
}

// rspamdDecisions sends GTUBE and the test rule's message through each
// rspamd path, to a sink that keeps what it is given, and prints what
// rspamd decided on each: the reply the client heard, and on the message
// delivered the fields it asked for. The paths must agree: rspamd is one
// engine, however it is asked.
func rspamdDecisions(probes []rspamdProbe) {
	fmt.Println("  rspamd's decisions on each path (GTUBE; the test rule's message):")
	var first string
	same := true
	for _, p := range probes {
		d, key, err := probeDecisions(p)
		if err != nil {
			fmt.Printf("    %-40s failed: %v\n", p.name, err)
			same = false
			continue
		}
		fmt.Printf("    %-40s %s\n", p.name, d)
		if first == "" {
			first = key
		}
		same = same && key == first
	}
	verdict := "the same on every path"
	if !same {
		verdict = "NOT the same on every path"
	}
	fmt.Printf("  rspamd's decisions: %s\n", verdict)
}

// probeDecisions runs one path's probe. key is what must agree between
// paths: the class of each reply and whether the tagged message came
// out with the test rule's field and a spam mark.
func probeDecisions(p rspamdProbe) (shown, key string, err error) {
	// smtp-sink writes as nobody: its directory is outside the bench's
	// 0700 work directory, and the probe's own.
	dump, err := os.MkdirTemp("", "gw-bench-decisions-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(dump)
	os.Chmod(dump, 0o777)
	sink := freePort()
	cmd := exec.Command("smtp-sink", "-u", "nobody", "-d", filepath.Join(dump, "m."), sink, "16")
	if err := cmd.Start(); err != nil {
		return "", "", err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if err := waitListening(sink, 5*time.Second); err != nil {
		return "", "", err
	}
	s, stop, err := p.start(sink)
	if err != nil {
		return "", "", err
	}
	defer stop()
	gtube := probeSend(s.addr, "gtube", rspamdtest.GTUBE)
	tag := probeSend(s.addr, "x "+rspamdtest.TagMarker, "hi")
	marks := "not delivered"
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		files, _ := filepath.Glob(filepath.Join(dump, "m.*"))
		if len(files) > 0 {
			time.Sleep(200 * time.Millisecond) // smtp-sink writes the file as the data comes
			marks = spamFields(files[0])
			break
		}
	}
	shown = fmt.Sprintf("GTUBE %q; test rule %q, delivered with %s", gtube, tag, marks)
	tagged := strings.Contains(marks, "X-GW-Test-Rule: hit") && strings.Contains(strings.ToLower(marks), "x-spam")
	key = fmt.Sprintf("%.1s/%.1s/%v", gtube, tag, tagged)
	return shown, key, nil
}

// probeSend sends one message and returns the reply to its end.
func probeSend(addr, subject, body string) string {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	msg := "From: bench@example.org\r\nTo: sink@example.net\r\nSubject: " + subject + "\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.org>\r\n\r\n" + body + "\r\n"
	err = c.Hello("client.example")
	if err == nil {
		err = c.Mail(benchFrom, nil)
	}
	if err == nil {
		err = c.Rcpt(benchTo, nil)
	}
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	if err == nil {
		w, err = c.Data()
	}
	if err == nil {
		w.Write([]byte(msg))
		err = w.Close()
	}
	var se *smtp.SMTPError
	switch {
	case err == nil:
		c.Quit()
		return "250"
	case errors.As(err, &se):
		return fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
	}
	return err.Error()
}

// spamFields lists the fields rspamd's verdicts add, as the sink got them.
func spamFields(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() && sc.Text() != "" {
		l := sc.Text()
		if k := strings.ToLower(l); strings.HasPrefix(k, "x-spam") || strings.HasPrefix(k, "x-gw-test-rule") {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return "no spam fields"
	}
	return strings.Join(out, ", ")
}
