package queue

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"time"

	"gw/lib/envelope"
	"gw/lib/hops"
)

// A segment file is a magic line followed by records, appended and never
// rewritten (gw-queue.5 draws them):
//
//	magic    "gwqseg1\n"
//	message  'M' hdrlen:u32 hdr (chunklen:u32 chunk)* 0:u32 envlen:u32 env crc:u32
//	seal     'S' count:u32 crc:u32
//	cancel   'C' id:u64 crc:u32
//
// Integers are big-endian; crc is CRC-32C of every byte of the record before
// it. hdr is id:u64 arrival:i64 (ns since the epoch) uid:u32 pid:u32; a
// longer hdr is allowed and its tail ignored, so fields can be added. The
// body is chunked because an injector streams it before it knows its
// length; env is the stored envelope. A seal says no record follows; a
// cancel withdraws a message whose flush failed after it was written.
const segMagic = "gwqseg1\n"

// Record kinds.
const (
	kindMessage = 'M'
	kindSeal    = 'S'
	kindCancel  = 'C'
)

// Limits a reader enforces before it allocates, so a hostile or corrupt
// file cannot make it allocate much.
const (
	maxHeader   = 4096
	minHeader   = 24
	maxChunk    = 16 << 20
	maxEnvelope = envelope.MaxStored
	bodyChunk   = 64 << 10 // chunk size of a streamed body
)

// castagnoli is the CRC-32C table, made at the first checksum: making it
// at start costs every program that links the queue (gw-scan's wrapper,
// gw-qstat) a tenth of a millisecond, at every start, whether it checks
// a record or not.
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// header is the fixed part of a message record.
type header struct {
	ID      ID
	Arrival time.Time
	UID     uint32
	PID     uint32
}

func (h header) bytes() []byte {
	b := make([]byte, minHeader)
	binary.BigEndian.PutUint64(b[0:], uint64(h.ID))
	binary.BigEndian.PutUint64(b[8:], uint64(h.Arrival.UnixNano()))
	binary.BigEndian.PutUint32(b[16:], h.UID)
	binary.BigEndian.PutUint32(b[20:], h.PID)
	return b
}

// encoder writes one record to w and keeps its running checksum.
type encoder struct {
	w   io.Writer
	crc uint32
	n   int64 // bytes written
	err error
}

func (e *encoder) put(p []byte) {
	if e.err != nil {
		return
	}
	e.crc = crc32.Update(e.crc, castagnoli(), p)
	var n int
	n, e.err = e.w.Write(p)
	e.n += int64(n)
}

func (e *encoder) putUint32(v uint32) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	e.put(b[:])
}

// begin starts a message record.
func (e *encoder) begin(h header) {
	e.put([]byte{kindMessage})
	hb := h.bytes()
	e.putUint32(uint32(len(hb)))
	e.put(hb)
}

// chunk appends a body chunk; an empty one is skipped, as it would end the body.
func (e *encoder) chunk(p []byte) {
	if len(p) == 0 {
		return
	}
	e.putUint32(uint32(len(p)))
	e.put(p)
}

// finish ends the body, writes the stored envelope and the checksum.
func (e *encoder) finish(env []byte) error {
	e.putUint32(0)
	e.putUint32(uint32(len(env)))
	e.put(env)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], e.crc)
	if e.err == nil {
		var n int
		n, e.err = e.w.Write(b[:])
		e.n += int64(n)
	}
	return e.err
}

// sealRecord returns a seal record for a segment of count messages.
func sealRecord(count uint32) []byte {
	return smallRecord(kindSeal, binary.BigEndian.AppendUint32(nil, count))
}

// cancelRecord returns a record that withdraws message id.
func cancelRecord(id ID) []byte {
	return smallRecord(kindCancel, binary.BigEndian.AppendUint64(nil, uint64(id)))
}

func smallRecord(kind byte, payload []byte) []byte {
	b := append([]byte{kind}, payload...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli()))
}

// Record is what a segment reader found: a message, a seal or a cancel.
type Record struct {
	Kind     byte
	Offset   int64 // where the record starts in its segment
	Length   int64 // its length in bytes
	ID       ID    // message or cancel
	Arrival  time.Time
	UID, PID uint32
	BodySize int64 // bytes of the message as stored
	// Hops counts the trace lines of the stored header (package hops),
	// counted as the checksum scan passes over the body, so that a
	// sender's loop check costs no read of its own.
	Hops     int
	Envelope envelope.Envelope // message
	Count    uint32            // seal
}

// Problem says why a segment reader stopped before the end of a file.
type Problem struct {
	Offset int64
	// Incomplete is true when the file simply ends inside a record: an
	// injection in progress, or one that died. Otherwise the bytes are
	// wrong (a torn write, or not a gw segment at all).
	Incomplete bool
	Reason     string
}

func (p *Problem) Error() string {
	what := "corrupt"
	if p.Incomplete {
		what = "incomplete"
	}
	return fmt.Sprintf("%s record at offset %d: %s", what, p.Offset, p.Reason)
}

// errIncomplete marks an EOF inside a record.
var errIncomplete = errors.New("file ends inside a record")

// decoder reads records from a segment and checks them.
type decoder struct {
	r   *bufio.Reader
	off int64
	crc uint32
	buf []byte
}

func (d *decoder) read(n int) ([]byte, error) {
	if cap(d.buf) < n {
		d.buf = make([]byte, n)
	}
	b := d.buf[:n]
	m, err := io.ReadFull(d.r, b)
	d.off += int64(m)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return nil, errIncomplete
	}
	if err != nil {
		return nil, err
	}
	d.crc = crc32.Update(d.crc, castagnoli(), b)
	return b, nil
}

func (d *decoder) uint32() (uint32, error) {
	b, err := d.read(4)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b), nil
}

// checkCRC reads the 4-byte checksum that ends a record and compares it with
// the running one.
func (d *decoder) checkCRC() error {
	want := d.crc
	got, err := d.uint32()
	if err != nil {
		return err
	}
	if got != want {
		return bad("checksum %08x, want %08x", got, want)
	}
	return nil
}

// ReadSegment reads the segment on r from its start, calling fn for every
// whole, checked record. It returns the offset just past the last good
// record, and a Problem when something other than a clean end of file
// stopped it. An error from fn or a read error is returned as err.
func ReadSegment(r io.Reader, fn func(Record) error) (end int64, problem *Problem, err error) {
	d := newDecoder(r, 0)
	defer d.release()
	magic, err := d.read(len(segMagic))
	if err == errIncomplete {
		return 0, &Problem{0, true, "no segment header yet"}, nil
	}
	if err != nil {
		return 0, nil, err
	}
	if string(magic) != segMagic {
		return 0, &Problem{0, false, "not a gw segment (bad magic)"}, nil
	}
	end, problem, err = d.records(fn)
	return end, problem, err
}

// readRecords reads records from r, which is positioned at offset base of
// its segment, just past the magic or a record; see ReadSegment.
func readRecords(r io.Reader, base int64, fn func(Record) error) (end int64, problem *Problem, err error) {
	d := newDecoder(r, base)
	defer d.release()
	return d.records(fn)
}

// segReaders recycles the decoders' read buffers: a reader of a queue
// filled by gw-queue opens a segment a message, and a fresh buffer each
// would be gigabytes to allocate and clear over a large queue.
var segReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 256<<10) }}

func newDecoder(r io.Reader, base int64) *decoder {
	br := segReaders.Get().(*bufio.Reader)
	br.Reset(r)
	return &decoder{r: br, off: base}
}

func (d *decoder) release() {
	d.r.Reset(nil)
	segReaders.Put(d.r)
}

func (d *decoder) records(fn func(Record) error) (end int64, problem *Problem, err error) {
	end = d.off
	sealed := false
	for {
		start := d.off
		if _, err := d.r.Peek(1); err == io.EOF {
			return end, nil, nil
		}
		if sealed {
			return end, &Problem{start, false, "bytes after the seal"}, nil
		}
		rec, perr := d.record()
		if perr != nil {
			if perr == errIncomplete {
				return end, &Problem{start, true, perr.Error()}, nil
			}
			var pe *parseError
			if errors.As(perr, &pe) {
				return end, &Problem{start, false, pe.Error()}, nil
			}
			return end, nil, perr
		}
		rec.Offset, rec.Length = start, d.off-start
		end = d.off
		sealed = rec.Kind == kindSeal
		if err := fn(rec); err != nil {
			return end, nil, err
		}
	}
}

// parseError is a record whose bytes are wrong, as opposed to a read error.
type parseError struct{ what string }

func (e *parseError) Error() string { return e.what }

func bad(format string, args ...any) error { return &parseError{fmt.Sprintf(format, args...)} }

// record reads one record; errIncomplete, a *parseError or a read error.
func (d *decoder) record() (Record, error) {
	d.crc = 0
	var rec Record
	k, err := d.read(1)
	if err != nil {
		return rec, err
	}
	rec.Kind = k[0]
	switch rec.Kind {
	case kindSeal:
		n, err := d.uint32()
		if err != nil {
			return rec, err
		}
		rec.Count = n
	case kindCancel:
		b, err := d.read(8)
		if err != nil {
			return rec, err
		}
		rec.ID = ID(binary.BigEndian.Uint64(b))
	case kindMessage:
		if err := d.message(&rec); err != nil {
			return rec, err
		}
	default:
		return rec, bad("unknown record kind 0x%02x", rec.Kind)
	}
	if err := d.checkCRC(); err != nil {
		return rec, err
	}
	return rec, nil
}

func (d *decoder) message(rec *Record) error {
	hlen, err := d.uint32()
	if err != nil {
		return err
	}
	if hlen < minHeader || hlen > maxHeader {
		return bad("header length %d out of range", hlen)
	}
	hb, err := d.read(int(hlen))
	if err != nil {
		return err
	}
	rec.ID = ID(binary.BigEndian.Uint64(hb[0:]))
	rec.Arrival = time.Unix(0, int64(binary.BigEndian.Uint64(hb[8:])))
	rec.UID = binary.BigEndian.Uint32(hb[16:])
	rec.PID = binary.BigEndian.Uint32(hb[20:])
	var trace hops.Counter
	for {
		n, err := d.uint32()
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		if n > maxChunk {
			return bad("chunk length %d over %d", n, maxChunk)
		}
		if err := d.skip(int64(n), &trace); err != nil {
			return err
		}
		rec.BodySize += int64(n)
	}
	rec.Hops = trace.Hops
	elen, err := d.uint32()
	if err != nil {
		return err
	}
	if elen > maxEnvelope {
		return bad("envelope length %d over %d", elen, maxEnvelope)
	}
	eb, err := d.read(int(elen))
	if err != nil {
		return err
	}
	env, err := envelope.ParseStored(eb)
	if err != nil {
		return bad("envelope: %v", err)
	}
	rec.Envelope = env
	return nil
}

// skip reads n bytes into the checksum without keeping them, straight
// from the read buffer; until the message's header has ended they also
// pass through trace, which stops looking at the empty line.
func (d *decoder) skip(n int64, trace *hops.Counter) error {
	for n > 0 {
		step := d.r.Size()
		if int64(step) > n {
			step = int(n)
		}
		b, err := d.r.Peek(step)
		if len(b) > 0 {
			d.crc = crc32.Update(d.crc, castagnoli(), b)
			if !trace.Done() {
				trace.Write(b)
			}
			d.r.Discard(len(b))
			d.off += int64(len(b))
			n -= int64(len(b))
			continue
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return errIncomplete
		}
		if err != nil {
			return err
		}
	}
	return nil
}
