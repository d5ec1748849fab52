// Command gw-dkim manages the DKIM keys gw-smtpd signs with: keygen makes
// a domain's key under control/dkim/DOMAIN/SELECTOR.key and prints the
// TXT record to publish; check compares what DNS publishes with the keys.
// See gw-dkim(8).
package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"gw/lib/dkim"
	"gw/lib/dns"
	"gw/lib/program"
)

func main() {
	var control string
	app := program.New("gw-dkim", "make DKIM signing keys and check their DNS records")
	app.Writer = os.Stdout // the record keygen prints is the program's output
	app.Flags = []cli.Flag{
		&cli.StringFlag{Name: "control-dir", Usage: "the instance's control `DIR`", Value: "/var/gw/main/control", Destination: &control},
	}
	var alg string
	app.Commands = []*cli.Command{
		{Name: "keygen", Usage: "make a key for DOMAIN and SELECTOR and print its TXT record", ArgsUsage: "DOMAIN SELECTOR",
			Flags:  []cli.Flag{&cli.StringFlag{Name: "algorithm", Usage: "the key's `ALG`: rsa (2048 bits) or ed25519", Value: dkim.AlgRSA, Destination: &alg}},
			Action: func(c *cli.Context) error { return keygen(c, control, alg) }},
		{Name: "check", Usage: "compare DOMAIN's published records with its keys", ArgsUsage: "DOMAIN",
			Action: func(c *cli.Context) error { return check(c, control) }},
	}
	program.Run(app)
}

func keygen(c *cli.Context, control, alg string) error {
	if c.NArg() != 2 {
		return program.Fail(program.ExitPermanent, "usage: gw-dkim keygen [--algorithm rsa|ed25519] DOMAIN SELECTOR")
	}
	domain, selector := strings.ToLower(strings.TrimSuffix(c.Args().Get(0), ".")), c.Args().Get(1)
	if err := checkNames(domain, selector); err != nil {
		return program.Fail(program.ExitPermanent, "%v", err)
	}
	key, err := dkim.GenerateKey(alg)
	if err != nil {
		return program.Fail(program.ExitPermanent, "%v", err)
	}
	pemBytes, err := dkim.MarshalKey(key)
	if err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	path := dkim.KeyFile(control, domain, selector)
	if err := writeNew(path, pemBytes); err != nil {
		if errors.Is(err, os.ErrExist) {
			return program.Fail(program.ExitPermanent, "%s exists: a published key is never overwritten; choose a new selector", path)
		}
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	rec, err := dkim.PublicRecord(key)
	if err != nil {
		return program.Fail(program.ExitTemporary, "%v", err)
	}
	fmt.Fprintf(os.Stderr, "gw-dkim: wrote %s\n", path)
	fmt.Fprintln(c.App.Writer, zoneLine(dkim.KeyName(selector, domain), rec))
	return nil
}

// checkNames refuses names that would make a path outside control/dkim
// or a DNS name no one can publish.
func checkNames(domain, selector string) error {
	for what, s := range map[string]string{"domain": domain, "selector": selector} {
		if s == "" || strings.HasPrefix(s, ".") || strings.ContainsAny(s, "/\\ \t\n") || strings.Contains(s, "..") {
			return fmt.Errorf("bad %s %q", what, s)
		}
		for _, r := range s {
			if !(r == '-' || r == '.' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return fmt.Errorf("bad %s %q: letters, digits, '-', '_' and '.' only", what, s)
			}
		}
	}
	if !strings.Contains(domain, ".") {
		return fmt.Errorf("bad domain %q: not a domain name", domain)
	}
	return nil
}

// writeNew writes a key file that must not exist yet: to a temporary
// file, synced, then linked into place, so that a crash leaves either no
// key or the whole key, and a concurrent keygen cannot replace it.
func writeNew(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".keygen-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	// readable by the owner's group: gw-smtpd's user reads it through
	// the group the administrator gives the file
	if err := tmp.Chmod(0o640); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// zoneLine is the record as a zone file line, its text cut into strings
// of at most 255 bytes (an RSA-2048 record is about 400).
func zoneLine(name, rec string) string {
	var parts []string
	for len(rec) > 255 {
		parts = append(parts, `"`+rec[:255]+`"`)
		rec = rec[255:]
	}
	parts = append(parts, `"`+rec+`"`)
	return name + ". IN TXT ( " + strings.Join(parts, "\n\t") + " )"
}

// check compares each key of DOMAIN with the record DNS gives for its
// selector. Exit 0 when every key is published as it is; 100 when one is
// missing, revoked or different; 111 when DNS could not answer.
func check(c *cli.Context, control string) error {
	if c.NArg() != 1 {
		return program.Fail(program.ExitPermanent, "usage: gw-dkim check DOMAIN")
	}
	domain := strings.ToLower(strings.TrimSuffix(c.Args().Get(0), "."))
	keys, err := dkim.LoadKeys(control)
	if err != nil {
		return program.Fail(program.ExitPermanent, "%v", err)
	}
	mine := keys[domain]
	if len(mine) == 0 {
		return program.Fail(program.ExitPermanent, "no keys for %s under %s", domain, filepath.Join(control, "dkim"))
	}
	sort.Slice(mine, func(i, j int) bool { return mine[i].Selector < mine[j].Selector })
	r := dns.FromEnv()
	bad, temporary := 0, false
	for _, k := range mine {
		name := dkim.KeyName(k.Selector, domain)
		pub, err := dkim.LookupKey(context.Background(), r, k.Selector, domain)
		switch {
		case errors.Is(err, dkim.ErrKeyTemporary):
			temporary = true
			fmt.Fprintf(c.App.Writer, "%s: unknown: %v\n", name, err)
		case err != nil:
			bad++
			fmt.Fprintf(c.App.Writer, "%s: bad: %v\n", name, err)
		case !samePublic(pub, k):
			bad++
			fmt.Fprintf(c.App.Writer, "%s: bad: the published key is not the public half of %s\n", name, dkim.KeyFile(control, domain, k.Selector))
		default:
			fmt.Fprintf(c.App.Writer, "%s: ok %s\n", name, pub.Alg)
		}
	}
	switch {
	case bad > 0:
		return program.Fail(program.ExitPermanent, "%d of %d keys of %s not published as they are", bad, len(mine), domain)
	case temporary:
		return program.Fail(program.ExitTemporary, "DNS did not answer for every key of %s", domain)
	}
	return nil
}

func samePublic(pub *dkim.PublicKey, k *dkim.PrivateKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := k.Signer.Public().(equaler)
	return ok && e.Equal(pub.Key)
}
