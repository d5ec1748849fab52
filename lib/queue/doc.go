// Package queue is gw's durable message queue: segment files that
// injectors append messages to, and a journal in which the one runner
// records what became of each recipient.
//
// Implementation summary (gw-queue.5 is the full description):
//
//   - seg/ID holds message records, each self-delimiting and checksummed.
//     An injector either streams one message into a segment of its own,
//     written in tmp/ and renamed into seg/ once flushed (MessageWriter:
//     gw-queue, a process a message), or appends the messages of many
//     concurrent injections to a shared segment and covers them all with
//     one fdatasync (Committer: gw-queued). The injector acknowledges a
//     message only after its record and, for a new name, the directory
//     entry are flushed.
//   - journal/N holds the runner's records: picked up, per-recipient state
//     (pending, delivered, failed; attempts; next try; last outcome, kept
//     as data: outcome.go), held, removed, and a dot record before each
//     final dot (dot.go). Each
//     states a whole value, so the last one wins.
//   - lock/clock is a shared counter that IDs are drawn from; lock/trigger
//     a FIFO an injector writes a byte to after each commit.
//
// States of a message, in the manner of qmail's INTERNALS:
//
//	state  seg record        journal          meaning
//	S1     incomplete, tmp/  -                being injected, or injector died
//	S2     whole, unflushed  -                shared segment: written, not yet
//	                                          acknowledged (gw-queued only)
//	S3     whole, flushed    -                queued (acknowledged), not picked up
//	S4     whole             P [R...] [H]     picked up by the runner
//	S5     whole             X                finished; bytes go with the segment
//
// A crash in S1 or S2 leaves bytes that readers refuse (S1) or a message
// that nobody acknowledged (S2, and S3 before the injector answered: the
// duplicate window, as qmail's); never a partial message. The runner removes S1 leftovers after Ossified.
//
// Every file below the queue is opened without following links and used
// only if it is a regular file (the trigger: a FIFO) with one link, owned
// by the queue directory's owner; the runner sets aside into bad/ what is
// not, and what is damaged, and never removes it (safe.go).
//
// Readers (gw-qstat) take no lock and write nothing: Snapshot reads the
// journal, then the segments, tolerating files that vanish meanwhile.
package queue
