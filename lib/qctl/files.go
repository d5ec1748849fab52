package qctl

// The files of ctl/ are in a directory of the queue that the tool and the
// runner both write: they go through the queue's side-file calls
// (queue.ReadSide, WriteSide...), which check ctl/ itself and read a file
// only as a regular file of one link owned by the queue's owner, so that
// neither the runner nor a tool run by root reads or writes through a
// link or a file someone else planted there.

// maxFile bounds a request or an answer: MaxIDs lines of 14 bytes and
// an action, or as many answer lines.
const maxFile = MaxIDs * 128
