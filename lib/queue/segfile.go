package queue

import (
	"os"
	"sync/atomic"
)

// segFile is a segment the runner keeps open while it reads it on
// (unsealed, a writer behind it): gw-queued appends a message at a time,
// and opening and checking the file again for every notice, and once
// more for every body, cost more system calls than reading the message.
// The open file stays the one openSafe checked when it was first opened.
//
// The bodies a delivery reads come from the same file; it is closed when
// the runner lets it go (sealed, read to its end, removed) and the last
// body read from it is closed, so that no delivery loses its file midway.
type segFile struct {
	f    *os.File
	refs atomic.Int32 // the runner's own hold, and one a body open
}

func newSegFile(f *os.File) *segFile {
	sf := &segFile{f: f}
	sf.refs.Store(1)
	return sf
}

func (sf *segFile) hold() { sf.refs.Add(1) }

func (sf *segFile) release() error {
	if sf.refs.Add(-1) == 0 {
		return sf.f.Close()
	}
	return nil
}
