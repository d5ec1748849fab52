// Package qstat is gw-qstat's logic: it reads queues without locking or
// writing them and prints what it found in the formats sysadmins already
// parse — qmail-qstat's summary, qmail-qread's listing, Postfix's
// postqueue -j JSON and qshape's age table — and as Prometheus metrics.
//
// Every format takes its queues as Reports (one lock-free Snapshot each,
// see queue.Snapshot) and, where ages matter, "now" as a parameter, so the
// same snapshot always prints the same bytes and tests can hold goldens.
// Nothing here exits or reads flags or the environment: gw-qstat's main
// hands in the selection and the writers.
//
// A message is in exactly one of the states below; the summary, the JSON
// queue_name and the metrics' state label use the same words, borrowed from
// Postfix's queue names so that its users read them at once:
//
//	incoming  committed, not yet picked up by the runner (qmail: todo/)
//	active    picked up, recipients pending, none tried yet
//	deferred  picked up, a pending recipient has been tried and failed
//	hold      held by the administrator
//	done      no recipient pending: waiting for its bounce and removal
package qstat
