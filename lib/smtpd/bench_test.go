package smtpd

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
)

// BenchmarkSession runs whole sessions over loopback (connect, EHLO,
// one message, QUIT) with an injector in memory: the CPU of the
// protocol layer alone, for profiles.
func BenchmarkSession(b *testing.B) {
	for _, size := range []int{1 << 10, 100 << 10} {
		b.Run(fmt.Sprintf("%dK", size>>10), func(b *testing.B) {
			body := strings.Repeat(strings.Repeat("x", 78)+"\r\n", size/80)
			msg := "EHLO client.example\r\nMAIL FROM:<s@sender.example>\r\nRCPT TO:<u@example.com>\r\nDATA\r\n"
			cfg := testConfig()
			b.SetBytes(int64(size))
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			for range b.N {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				client := c.(*net.TCPConn)
				server, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				done := make(chan struct{})
				go func() { Serve(server, cfg, Client{RemoteIP: "127.0.0.1", Injector: &recordingInjector{}}); close(done) }()
				br := bufio.NewReader(client)
				br.ReadString('\n')
				io.WriteString(client, msg)
				for i := 0; i < 4; {
					l, err := br.ReadString('\n')
					if err != nil {
						b.Fatal(err)
					}
					if l[3] == ' ' {
						i++
					}
				}
				io.WriteString(client, "Subject: x\r\n\r\n"+body+".\r\nQUIT\r\n")
				io.Copy(io.Discard, br)
				client.Close()
				<-done
			}
		})
	}
}
