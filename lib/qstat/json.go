package qstat

import (
	"bufio"
	"encoding/json"
	"io"

	"gw/lib/queue"
)

// jsonMessage is one line of JSON output. Its members follow Postfix's
// postqueue -j, whose consumers then need only the gw additions; like
// Postfix's, the list may grow, and readers must ignore members they do
// not know. gw-qstat.8 documents every member; keep the two together.
type jsonMessage struct {
	Instance    string          `json:"instance,omitempty"` // only when chosen by --root
	QueueName   string          `json:"queue_name"`         // the state: incoming, active, …
	QueueID     string          `json:"queue_id"`           // 13 hex digits
	ArrivalTime int64           `json:"arrival_time"`       // seconds since the epoch
	MessageSize int64           `json:"message_size"`       // bytes as stored
	Sender      string          `json:"sender"`             // "" for the null sender
	Recipients  []jsonRecipient `json:"recipients"`
	Held        bool            `json:"held"`
}

type jsonRecipient struct {
	Address     string `json:"address"`
	State       string `json:"state"` // pending, delivered, failed
	Attempts    int    `json:"attempts"`
	NextTry     int64  `json:"next_try,omitempty"`     // seconds since the epoch; absent: as soon as possible
	DelayReason string `json:"delay_reason,omitempty"` // the last delivery error, if any
	// The last outcome's fields (gw additions), each absent when it
	// does not apply.
	Status     string `json:"status,omitempty"`      // enhanced status code
	ReplyCode  int    `json:"reply_code,omitempty"`  // the server's reply code
	Stage      string `json:"stage,omitempty"`       // the step it came from
	RemoteHost string `json:"remote_host,omitempty"` // the server's name
	RemoteAddr string `json:"remote_addr,omitempty"` // its address and port
	DotSent    bool   `json:"dot_sent,omitempty"`    // the final dot went out
	// History: every delivery attempt, from the logs (show --json only).
	History []jsonAttempt `json:"history,omitempty"`
}

// JSON writes one JSON object a message, one a line, with no enclosing
// array: the shape of postqueue -j, so that a consumer can stream it.
// Strings keep the bytes the queue holds, except that invalid UTF-8 reads
// as U+FFFD: JSON cannot carry it.
func JSON(w io.Writer, reps []Report) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	// A message without recipients still prints "recipients": [], not null.
	jm := jsonMessage{Recipients: []jsonRecipient{}}
	for _, r := range reps {
		for _, m := range r.Messages {
			jm = appendJSON(jm.Recipients[:0], r, m)
			if err := enc.Encode(&jm); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// toJSON returns m as the listing shows it.
func toJSON(r Report, m *queue.Message) jsonMessage {
	return appendJSON([]jsonRecipient{}, r, m)
}

// appendJSON returns m as the listing shows it, its recipients appended
// to rcpts (a buffer the listing reuses from one message to the next).
func appendJSON(rcpts []jsonRecipient, r Report, m *queue.Message) jsonMessage {
	jm := jsonMessage{
		Instance:    r.Instance,
		QueueName:   StateOf(m).String(),
		QueueID:     m.ID.String(),
		ArrivalTime: m.Arrival.Unix(),
		MessageSize: m.Size,
		Sender:      m.Sender,
		Recipients:  rcpts,
		Held:        m.Held,
	}
	for _, rc := range m.Recipients {
		o := rc.Outcome
		jr := jsonRecipient{Address: rc.Address, State: rc.State.String(), Attempts: rc.Attempts, DelayReason: rc.LastError(),
			Status: o.Status, ReplyCode: o.Code, Stage: o.Stage, RemoteHost: o.Host, RemoteAddr: o.Addr, DotSent: o.DotSent}
		if rc.State == queue.Pending && !rc.NextTry.IsZero() {
			jr.NextTry = rc.NextTry.Unix()
		}
		jm.Recipients = append(jm.Recipients, jr)
	}
	return jm
}
