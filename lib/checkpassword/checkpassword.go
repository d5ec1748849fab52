// Package checkpassword verifies a user's password through the
// checkpassword interface of the qmail tradition (cr.yp.to/checkpwd):
// the program reads "user\0password\0timestamp\0" on fd 3 and, when the
// password is right, runs the program named by its last argument (here
// /bin/true), so it exits 0. Exit 1 means a wrong password, anything else
// a temporary failure. Any existing checkpassword program works.
package checkpassword

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// Timeout bounds one check.
const Timeout = 10 * time.Second

// Checker runs one checkpassword program.
type Checker struct {
	Argv []string // the program and its arguments, without the final "true"
	True string   // the program it runs on success; "" means /bin/true
}

// Check reports whether password is user's.
func (c *Checker) Check(user, password string) (bool, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return false, err
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	t := c.True
	if t == "" {
		t = "/bin/true"
	}
	cmd := exec.CommandContext(ctx, c.Argv[0], append(c.Argv[1:], t)...)
	cmd.ExtraFiles = []*os.File{r} // fd 3
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		w.Close()
		return false, fmt.Errorf("checkpassword: %w", err)
	}
	r.Close()
	// At most 512 bytes, as checkpassword reads; longer input is refused
	// by the program itself.
	stamp := strconv.FormatInt(time.Now().Unix(), 10)
	w.Write([]byte(user + "\x00" + password + "\x00" + stamp + "\x00"))
	w.Close()
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return false, nil
	case ctx.Err() != nil:
		return false, fmt.Errorf("checkpassword: timed out after %v", Timeout)
	default:
		return false, fmt.Errorf("checkpassword: %w", err)
	}
}
