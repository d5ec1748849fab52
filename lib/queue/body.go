package queue

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrCorrupt is returned by a body reader whose record fails its checksum:
// the caller must not finish delivering what it read (an SMTP client drops
// the connection before the final dot).
var ErrCorrupt = errors.New("message record is corrupt")

// bodyReader streams the body of a message record and checks the record's
// checksum before it reports the end of the body.
type bodyReader struct {
	done  func() error // lets the file go
	r     *bufio.Reader
	crc   uint32
	left  uint32 // bytes left in the current chunk
	ended bool
}

// bodyBufs keeps the read buffers of closed body readers for the next
// ones, so that a delivery does not allocate (and zero) 64 KiB.
var bodyBufs = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// OpenBody opens the stored message m for reading. The last Read returns
// io.EOF only when the whole record checked out, else ErrCorrupt.
func (q *Queue) OpenBody(m *Message) (io.ReadCloser, error) {
	f, err := q.openSafe(dirSeg+"/"+m.Segment, unix.O_RDONLY, 0, regular)
	if err != nil {
		return nil, err
	}
	// The record's bytes and no more: a buffered reader of the file
	// would read on into the records after it, bytes nobody uses.
	var src io.Reader = io.NewSectionReader(f, m.Offset, m.Length)
	if m.Length <= 0 {
		if _, err := f.Seek(m.Offset, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		src = f
	}
	return openBodyIn(src, m, f.Close)
}

// openBodyIn is OpenBody on src, the bytes of m's record on: the runner
// hands out bodies from the segments it holds open. done lets the file go
// when the reader is closed.
func openBodyIn(src io.Reader, m *Message, done func() error) (io.ReadCloser, error) {
	br := bodyBufs.Get().(*bufio.Reader)
	br.Reset(src)
	b := &bodyReader{done: done, r: br}
	kind, err := b.take(1)
	if err != nil || kind[0] != kindMessage {
		b.Close()
		return nil, fmt.Errorf("message %s: no message record at offset %d: %w", m.ID, m.Offset, ErrCorrupt)
	}
	hl, err := b.take(4)
	if err == nil {
		n := binary.BigEndian.Uint32(hl)
		if n < minHeader || n > maxHeader {
			err = ErrCorrupt
		} else {
			var h []byte
			h, err = b.take(int(n))
			if err == nil && ID(binary.BigEndian.Uint64(h)) != m.ID {
				err = fmt.Errorf("record holds message %s: %w", ID(binary.BigEndian.Uint64(h)), ErrCorrupt)
			}
		}
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("message %s: %w", m.ID, err)
	}
	return b, nil
}

// take reads n bytes into the checksum; n is bounded by the callers.
func (b *bodyReader) take(n int) ([]byte, error) {
	p := make([]byte, n)
	if _, err := io.ReadFull(b.r, p); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, ErrCorrupt
		}
		return nil, err
	}
	b.crc = crc32.Update(b.crc, castagnoli(), p)
	return p, nil
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.ended {
		return 0, io.EOF
	}
	if b.r == nil {
		return 0, os.ErrClosed
	}
	for b.left == 0 {
		l, err := b.take(4)
		if err != nil {
			return 0, err
		}
		b.left = binary.BigEndian.Uint32(l)
		if b.left == 0 {
			return 0, b.finish()
		}
		if b.left > maxChunk {
			return 0, ErrCorrupt
		}
	}
	if uint32(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.crc = crc32.Update(b.crc, castagnoli(), p[:n])
	b.left -= uint32(n)
	if err == io.EOF {
		err = ErrCorrupt
	}
	return n, err
}

// finish reads the envelope and checks the checksum.
func (b *bodyReader) finish() error {
	l, err := b.take(4)
	if err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(l)
	if n > maxEnvelope {
		return ErrCorrupt
	}
	if _, err := b.take(int(n)); err != nil {
		return err
	}
	want := b.crc
	got, err := b.take(4)
	if err != nil {
		return err
	}
	if binary.BigEndian.Uint32(got) != want {
		return ErrCorrupt
	}
	b.ended = true
	return io.EOF
}

// Close closes the file; the reader's buffer goes back to bodyBufs.
func (b *bodyReader) Close() error {
	if b.r != nil {
		b.r.Reset(nil)
		bodyBufs.Put(b.r)
		b.r = nil
	}
	if b.done == nil {
		return os.ErrClosed
	}
	done := b.done
	b.done = nil // a second Close must not let the file go twice
	return done()
}
