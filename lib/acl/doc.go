// Package acl is the tcprules language of ucspi-tcp: it parses a rules
// file, compiles it into a bbolt database that is replaced whole, and
// answers the per-connection question "what does this client get" in
// tcpserver's exact lookup order.
//
// Implementation summary.
//
// Parse reads the text line by line with tcprules' algorithm (comments only
// in column 1, trailing blanks stripped but not CR, the first colon that is
// followed by allow or deny ends the address, any byte may quote a value)
// and reports the first bad line by number. Compile turns each rule into
// the keys tcprules would store (numeric ranges expanded, the first line
// wins for a key) plus, as an extension, CIDR prefixes; Build writes them
// to a temporary bbolt file, fsyncs it, renames it over the old database
// and fsyncs the directory, so that a reader which opens the file per
// connection sees the old or the new rule set and never a mix.
//
// A rule's stored value keeps tcprules' own record bytes ("D\0" for deny,
// then "+NAME=VALUE\0" items), so that every odd case (a NUL inside a
// quoted value, a name without "=") decodes as tcpserver and tcprulescheck
// decode it. The layout is in layout.go and in gw-tcprules(5).
//
// Lookup probes at most: info@ip, info@=host, ip, =host, each dotted (or,
// for IPv6, colon) prefix of ip and each CIDR length in use, each
// =.suffix of host, "=", and the empty key. The first key found decides;
// no rule found means allow with no environment changes.
package acl
