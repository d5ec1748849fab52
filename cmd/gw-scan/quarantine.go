package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"gw/lib/handoff"
	"gw/lib/program"
	"gw/lib/scan"
)

func qlist(c *config) error {
	held, bad, err := c.quarantineDir().List()
	if err != nil {
		return program.Fail(program.ExitTemporary, "unable to list the quarantine: %v", err)
	}
	for _, h := range held {
		fmt.Printf("%s %s size=%d from=<%s> to=<%s> reason=%q\n", h.ID, h.Time.UTC().Format("2006-01-02T15:04:05Z"),
			h.Size, h.Envelope.Sender, strings.Join(h.Envelope.Recipients, ">,<"), h.Reason)
	}
	for _, b := range bad {
		fmt.Fprintf(os.Stderr, "gw-scan: warning: unreadable quarantine file %s\n", b)
	}
	return nil
}

func qshow(c *config, ids []string) error {
	if len(ids) != 1 {
		return program.Fail(program.ExitPermanent, "usage: gw-scan quarantine show ID")
	}
	_, r, err := c.quarantineDir().Open(ids[0])
	if err != nil {
		return held(err)
	}
	defer r.Close()
	if _, err := io.Copy(os.Stdout, r); err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	return nil
}

func held(err error) error {
	if errors.Is(err, scan.ErrNotHeld) {
		return program.Fail(program.ExitPermanent, "%v", err)
	}
	return program.Fail(program.ExitTemporary, "%v", err)
}

// qrelease queues each message for its recorded recipients through the
// queue program (qmail-queue's interface), then removes it: a crash in
// between may deliver a message twice, never lose it.
func qrelease(c *config, ids []string) error {
	if len(ids) == 0 {
		return program.Fail(program.ExitPermanent, "usage: gw-scan quarantine release ID...")
	}
	q := c.quarantineDir()
	inj := &handoff.Exec{Path: c.queue(), Plain: !handoff.TakesDSN(c.queue())}
	for _, id := range ids {
		h, r, err := q.Open(id)
		if err != nil {
			return held(err)
		}
		tx, err := inj.Begin(h.Envelope)
		if err != nil {
			r.Close()
			return program.Fail(program.ExitTemporary, "release %s: %v", id, err)
		}
		_, err = io.Copy(tx, r)
		r.Close()
		if err != nil {
			tx.Abort()
			return program.Fail(program.ExitTemporary, "release %s: %v", id, err)
		}
		if code, err := tx.Commit(); err != nil {
			return program.Fail(program.ExitTemporary, "release %s: queue exited %d: %v", id, code, err)
		}
		if err := q.Remove(id); err != nil {
			return program.Fail(program.ExitTemporary, "released %s but unable to remove it: %v", id, err)
		}
		fmt.Fprintf(os.Stderr, "info released scan=%s rcpts=%d\n", id, len(h.Envelope.Recipients))
	}
	return nil
}

func qremove(c *config, ids []string) error {
	if len(ids) == 0 {
		return program.Fail(program.ExitPermanent, "usage: gw-scan quarantine remove ID...")
	}
	for _, id := range ids {
		if err := c.quarantineDir().Remove(id); err != nil {
			return held(err)
		}
	}
	return nil
}
