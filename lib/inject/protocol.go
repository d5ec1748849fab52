package inject

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"golang.org/x/sys/unix"
)

// The socket protocol's versions (gw-queued.8, Protocol). Version 1 is
// the first: the reply to a message is one byte, qmail-queue's exit code.
// Version 2 adds the queue id to an accepting reply, so that a listener
// can name it to its client (250 ok <qid>) and one key links its log to
// gw-queued's. A connection speaks version 1 until its client asks for
// more with a hello; an old client never does, so it is served as before.
// Version 3 lets a client name the listener session a message comes from
// (a session frame before the message), so that gw-queued's queued line
// carries the sid as the listener's accepted line does: one trace from
// the client's transcript to the queue. A server of version 2 answers a
// hello for 3 with 2, and its client then sends no session frame.
const (
	Version1 = 1
	Version2 = 2
	Version3 = 3
	// Newest is the version this build speaks.
	Newest = Version3
)

// helloMark is the top of a hello frame header: a length no chunk can have
// (over maxSocketChunk), whose low byte is the version asked for. A server
// of version 1 refuses it as an oversized chunk (54) and closes the
// connection, having read exactly these 4 bytes: the client then knows
// it speaks version 1, and dials again.
const helloMark = 0xFFFFFF00

// hello returns the frame header that asks for version v.
func hello(v byte) [4]byte {
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], helloMark|uint32(v))
	return h
}

// helloVersion reports whether the frame header n is a hello, and the
// version it asks for.
func helloVersion(n uint32) (byte, bool) {
	if n&0xFFFFFF00 != helloMark {
		return 0, false
	}
	return byte(n), true
}

// sessionMark is the top of a session frame's header, another length no
// chunk can have; its low byte is the length of the session id that
// follows, 1 to maxQIDLen bytes. Only a connection of version 3 may send
// one, and only before a message's first chunk.
const sessionMark = 0xFFFFFE00

// sessionFrame returns the frame that names the session sid, or nil for a
// sid that PlainQID would not take: a label is dropped, never sent bad.
func sessionFrame(sid string) []byte {
	if !PlainQID(sid) {
		return nil
	}
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(sid)), sessionMark|uint32(len(sid)))
	return append(b, sid...)
}

// sessionLen reports whether the frame header n starts a session frame,
// and the length of the id it announces.
func sessionLen(n uint32) (int, bool) {
	if n&0xFFFFFF00 != sessionMark {
		return 0, false
	}
	return int(n & 0xFF), true
}

// maxQIDLen bounds the queue id in a reply: 13 hex digits today, room for
// a longer form later, and a bound on what a client reads.
const maxQIDLen = 64

// appendReply appends the reply to a message in version v: the exit code,
// then in version 2 after a 0 the queue id as one length byte and its
// text.
func appendReply(b []byte, v byte, code int, qid string) []byte {
	b = append(b, byte(code))
	if v >= Version2 && code == 0 {
		b = append(b, byte(len(qid)))
		b = append(b, qid...)
	}
	return b
}

// errBadQID is a queue id in a reply that is not one: the message is
// queued (the code said so), but its id is not repeated anywhere.
var errBadQID = errors.New("queue id in the reply is not a queue id")

// maxReply is the longest reply to a message: the code, the length byte
// and the longest queue id the length byte can announce.
const maxReply = 2 + 255

// readReply reads the reply to a message in version v, with as few reads
// as the server's writes allow (gw-queued writes a reply in one): a
// message's handoff waits for it, and a read a byte was three system
// calls a message. A malformed queue id is dropped (qid "", errBadQID)
// once its bytes are read: the code is what counts. Bytes the server
// sent past the reply, which nobody asked for, are read with it and
// reported as extra: the connection is out of step and must not carry
// another message. buf is where the reply is read, at least maxReply
// bytes: the client's own, not one allocated a message.
func readReply(r io.Reader, v byte, buf []byte) (code int, qid string, extra bool, err error) {
	buf = buf[:maxReply]
	have := 0
	need := 1 // the code; then, for an accepting reply of version 2, the id's length and the id
	for have < need {
		n, rerr := r.Read(buf[have:])
		have += n
		if have >= 1 && v >= Version2 && buf[0] == 0 {
			need = 2
			if have >= 2 {
				need = 2 + int(buf[1])
			}
		}
		if have >= need {
			break
		}
		if rerr != nil {
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			if have == 0 {
				return 0, "", false, fmt.Errorf("no reply from the injector: %w", rerr)
			}
			return 0, "", false, fmt.Errorf("no queue id from the injector: %w", rerr)
		}
	}
	code, extra = int(buf[0]), have > need
	if need == 1 {
		return code, "", extra, nil
	}
	id := buf[2:need]
	if !PlainQID(string(id)) {
		return code, "", extra, errBadQID
	}
	return code, string(id), extra, nil
}

// PlainQID reports whether s may stand as a queue id (or a session id)
// in a reply and a log line: 1 to 64 letters and digits. Whatever the injector says is
// checked, as everything one gw program hears from another.
func PlainQID(s string) bool {
	if len(s) == 0 || len(s) > maxQIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// SessionEnv names the environment variable in which a listener tells an
// injector with qmail-queue's interface (gw-queue) the session a message
// comes from, for its log: version 3's session frame by other means. The
// injector checks it as anything another program says (SessionFromEnv).
const SessionEnv = "GW_SID"

// SessionFromEnv returns the session id SessionEnv names in getenv's
// environment, or "" when it is unset or not a plain id (PlainQID): a
// bad label is dropped, the message is not refused for it.
func SessionFromEnv(getenv func(string) string) string {
	if sid := getenv(SessionEnv); PlainQID(sid) {
		return sid
	}
	return ""
}

// QIDFD names the descriptor on which an injector with qmail-queue's
// interface may write the queue id it committed a message under, and
// QIDFDNumber is the one handoff.Exec gives (gw-queue.8, QUEUE ID). This
// is gw's extension of the interface, and an optional one: an injector
// that knows nothing of it leaves the descriptor unwritten and the
// listener has no id to give; gw-queue writes nothing there unless QIDFD
// names it. Descriptors 0 and 1 keep their meaning and direction.
const (
	QIDFD       = "GW_QIDFD"
	QIDFDNumber = 3
)

// TellQID writes qid and a newline on the descriptor QIDFD names in
// getenv's environment, once the message is durable. Only a descriptor
// above 2 is written: 0 and 1 are the message and the envelope, and an
// injector never writes them. A failed write changes nothing: the exit
// code is the answer, the id only a label.
func TellQID(getenv func(string) string, qid string) {
	fd, err := strconv.Atoi(getenv(QIDFD))
	if err != nil || fd <= 2 || !PlainQID(qid) {
		return
	}
	unix.Write(fd, []byte(qid+"\n"))
}
