package smtpd

import (
	"net"

	"gw/lib/tcpserver"
)

// StdioConn returns the connection tcpserver handed over on fds 0 and 1
// (tcpserver.StdioConn).
func StdioConn() net.Conn { return tcpserver.StdioConn() }
