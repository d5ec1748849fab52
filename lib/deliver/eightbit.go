package deliver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// sevenBit returns the message r, of size bytes as the queue recorded it,
// made 7-bit for a server that did not offer 8BITMIME (see Downgrade), or
// a 5.6.3 refusal when it cannot be. The whole message is read first:
// whether it needs converting, and whether it can be, is known only at
// its end, and the answer must come before DATA, while the transaction
// can still be reset. So a message for such a server is held in memory
// once (twice when converted); servers without 8BITMIME are rare, and a
// message that is 7-bit already goes out unchanged.
func (s *smtpSession) sevenBit(r io.Reader, size int64) (io.Reader, error) {
	limit := size + sizeSlack
	if size <= 0 {
		limit = maxUnsized
	}
	msg, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading the stored message: %w", err)
	}
	if int64(len(msg)) > limit {
		return nil, fmt.Errorf("reading the stored message: %w", errLonger)
	}
	out, err := Downgrade(msg)
	if err != nil {
		// gw's own verdict, so no Host: the server said nothing of it.
		return nil, &Reply{Code: 554, Enhanced: "5.6.3", Own: true,
			Text: fmt.Sprintf("5.6.3 %s does not offer 8BITMIME and the message cannot be made 7-bit: %v", s.host, err)}
	}
	return bytes.NewReader(out), nil
}

// What sevenBit holds at most: the recorded size and a little more (the
// size counts the stored bytes, which a reader gives back as they are),
// or maxUnsized when no size was given.
const (
	sizeSlack  = 64 << 10
	maxUnsized = 64 << 20
)

var errLonger = errors.New("the message is longer than its recorded size")
