// Package qmtp speaks QMTP (D. J. Bernstein, 1997): the server side of
// gw-qmtpd and the pipelining client gw-send delivers with. Everything on
// the wire is a netstring, "len:bytes,".
//
// Implementation summary: netstrings are read strictly and incrementally
// from a bufio.Reader. The declared length is checked against the caller's
// bound digit by digit, before anything is allocated, so "9223372036854775808:"
// costs twenty bytes of reading and nothing else; a body is never read
// whole, only copied through in the reader's buffer; and a length that never
// arrives ends at the connection's read deadline. Any malformed byte is
// ErrSyntax: the server then drops the connection, and the package under
// way, whose injector is aborted, leaves nothing in the queue.
package qmtp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Limits on what a peer declares, each with its named error.
const (
	MaxDigits = 19 // digits of a length: int64 holds any 18-digit number
	// MaxMessage bounds a message netstring (qmail-qmtpd's 200000000);
	// a larger one is ErrTooLong, a resource error (Z), not a syntax error.
	MaxMessage = 200_000_000
	// MaxAddress bounds a sender or recipient: qmail-qmtpd refuses 1000
	// bytes and more with "unacceptable sender" or "can't handle".
	MaxAddress = 1000
	// MaxRecipientList bounds the netstring of recipients: room for
	// envelope.MaxRecipients addresses of 200 bytes.
	MaxRecipientList = 2 << 20
	// MaxResponse bounds one response the client reads.
	MaxResponse = 4096
)

// Errors of the netstring layer.
var (
	ErrSyntax  = errors.New("netstring syntax error")
	ErrTooLong = errors.New("netstring longer than allowed")
)

// ReadLength reads a netstring's "len:" and returns len, refusing an empty
// length, a non-digit, a leading zero (but "0:"), and any length above
// max, as soon as the digit that makes it too long is read.
func ReadLength(br *bufio.Reader, max int64) (int64, error) {
	var n int64
	for i := 0; ; i++ {
		c, err := br.ReadByte()
		if err != nil {
			if i > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		switch {
		case c == ':' && i > 0:
			return n, nil
		case c < '0' || c > '9':
			return 0, fmt.Errorf("%w: byte %q in a length", ErrSyntax, c)
		case i > 0 && n == 0:
			return 0, fmt.Errorf("%w: leading zero in a length", ErrSyntax)
		case i >= MaxDigits:
			return 0, ErrTooLong
		}
		n = n*10 + int64(c-'0')
		if n > max {
			return 0, ErrTooLong
		}
	}
}

// ReadComma reads the ',' that ends a netstring.
func ReadComma(br *bufio.Reader) error {
	c, err := br.ReadByte()
	if err != nil {
		return noEOF(err)
	}
	if c != ',' {
		return fmt.Errorf("%w: %q where ',' ends a netstring", ErrSyntax, c)
	}
	return nil
}

// ReadString reads a whole netstring of at most max bytes. A longer one is
// read and dropped when it is at most skip bytes (long is then true), so
// the package can be refused politely, as qmail-qmtpd refuses a long
// address; above skip it is ErrTooLong.
func ReadString(br *bufio.Reader, max, skip int64) (s []byte, long bool, err error) {
	n, err := ReadLength(br, skip)
	if err != nil {
		return nil, false, noEOF(err)
	}
	if n > max {
		if _, err := br.Discard(int(n)); err != nil {
			return nil, false, noEOF(err)
		}
		return nil, true, ReadComma(br)
	}
	s = make([]byte, n)
	if _, err := io.ReadFull(br, s); err != nil {
		return nil, false, noEOF(err)
	}
	return s, false, ReadComma(br)
}

// noEOF turns an end of input inside a netstring into ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Append appends s as a netstring to dst.
func Append(dst []byte, s string) []byte {
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	dst = append(dst, s...)
	return append(dst, ',')
}
