package scan

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"gw/lib/envelope"

	"gw/lib/trustpath"
)

// QuarantineDir is an instance's quarantine directory. Each held message is
// one file named by its scan id, written by temp file, fsync and rename
// (then the directory fsynced), so a listed file is whole:
//
//	gw-quarantine 1 <reason>\n
//	F<sender>\0T<rcpt>\0...\0\0      (the envelope, wire form)
//	<message>                        (stored form, headers as tagged)
//
// Files whose name begins with '.' are unfinished and ignored; gw-scan
// never reads them back, and removes its own on failure.
type QuarantineDir struct{ Dir string }

const quarantineMagic = "gw-quarantine 1 "

// maxReason bounds the first line of a quarantine file.
const maxReason = 1024

// Held is one quarantined message as listed.
type Held struct {
	ID       string
	Reason   string
	Time     time.Time
	Size     int64 // bytes of the message
	Envelope envelope.Envelope
}

// Put holds the message in r with env for reason, durably: it returns only
// once the file and its directory entry are on disk.
func (q *QuarantineDir) Put(id, reason string, env envelope.Envelope, r io.Reader) error {
	if err := os.MkdirAll(q.Dir, 0o750); err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	tmp := filepath.Join(q.Dir, "."+id)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("quarantine %s: %w", id, err)
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	bw.WriteString(quarantineMagic + sanitize(reason) + "\n")
	bw.Write(env.Wire())
	if _, err := io.Copy(bw, r); err != nil {
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("quarantine %s: %w", id, err)
	}
	if err := os.Rename(tmp, filepath.Join(q.Dir, id)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("quarantine %s: %w", id, err)
	}
	return syncDir(q.Dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ErrNotHeld reports an id that is not in the quarantine.
var ErrNotHeld = errors.New("no such quarantined message")

// validID reports whether id names a file in the quarantine directory and
// nothing else: no path separators, no leading dot.
func validID(id string) bool {
	return id != "" && !strings.HasPrefix(id, ".") && !strings.ContainsAny(id, "/\x00")
}

// Open returns the held message id, its header fields read, and r positioned at
// the start of the message.
func (q *QuarantineDir) Open(id string) (*Held, io.ReadCloser, error) {
	if !validID(id) {
		return nil, nil, fmt.Errorf("%w: %q", ErrNotHeld, id)
	}
	f, err := q.openHeld(id)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: %s", ErrNotHeld, id)
	}
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(f)
	line, err := br.ReadSlice('\n')
	if err != nil || !bytes.HasPrefix(line, []byte(quarantineMagic)) || len(line) > maxReason {
		f.Close()
		return nil, nil, fmt.Errorf("quarantine %s: not a quarantine file", id)
	}
	env, err := envelope.Read(br)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("quarantine %s: envelope: %w", id, err)
	}
	head := int64(len(line) + len(env.Wire()))
	h := &Held{ID: id, Reason: strings.TrimSpace(string(line[len(quarantineMagic):])), Time: st.ModTime(), Size: st.Size() - head, Envelope: env}
	return h, readCloser{br, f}, nil
}

// openHeld opens the file id as a held message only if gw-scan could have
// made it: not through a link, a regular file with one name, owned by the
// quarantine directory's owner (the user gw-scan runs as). The sysadmin
// shows and releases held messages as root, and releasing queues what is
// read for the envelope's recipients: a link to another file there would
// have root read and send it.
func (q *QuarantineDir) openHeld(id string) (*os.File, error) {
	path := filepath.Join(q.Dir, id)
	var dir unix.Stat_t
	if err := unix.Stat(q.Dir, &dir); err != nil {
		return nil, &os.PathError{Op: "stat", Path: q.Dir, Err: err}
	}
	f, err := trustpath.OpenFile(path, os.O_RDONLY, 0, fmt.Sprintf("not by the quarantine's owner (uid %d)", dir.Uid), int(dir.Uid))
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("quarantine %s: a symbolic link, not a held message", id)
	}
	if pe := (*os.PathError)(nil); errors.As(err, &pe) && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("quarantine %s: %w", id, pe.Err)
	}
	return f, err
}

type readCloser struct {
	io.Reader
	io.Closer
}

// List returns the held messages, oldest first. Files it cannot read are
// returned in bad, by name.
func (q *QuarantineDir) List() (held []*Held, bad []string, err error) {
	ents, err := os.ReadDir(q.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !validID(e.Name()) {
			continue
		}
		h, r, err := q.Open(e.Name())
		if err != nil {
			bad = append(bad, e.Name())
			continue
		}
		r.Close()
		held = append(held, h)
	}
	sort.Slice(held, func(i, j int) bool { return held[i].Time.Before(held[j].Time) })
	return held, bad, nil
}

// Remove deletes the held message id.
func (q *QuarantineDir) Remove(id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: %q", ErrNotHeld, id)
	}
	err := os.Remove(filepath.Join(q.Dir, id))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotHeld, id)
	}
	if err != nil {
		return err
	}
	return syncDir(q.Dir)
}
