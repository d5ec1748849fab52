// Package rspamdtest starts a real rspamd for the end-to-end tests and
// make bench: its own configuration (no module of Debian's configuration,
// so nothing fetches maps or asks DNS blocklists), DNS pointed at
// loopback, no redis, a normal worker on a loopback port, optionally the
// proxy worker in milter mode, and the test rules below in a Lua file.
package rspamdtest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Markers the test rules match in the Subject; GTUBE is rspamd's own.
const (
	GTUBE         = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
	TagMarker     = "gw-rspamd-tag"     // GW_TEST_TAG, 7 points: add header; asks for X-GW-Test-Rule, drops X-Remove-Me
	SubjectMarker = "gw-rspamd-subject" // GW_TEST_SUBJECT, 11 points: rewrite subject
	GreyMarker    = "gw-rspamd-grey"    // GW_TEST_GREY, 4.5 points: greylist
	SoftMarker    = "gw-rspamd-soft"    // GW_TEST_SOFT: soft reject, whatever the score
)

// GW_TEST_ENVELOPE hits when rspamd was told this envelope, a client at
// 127.0.0.1 that said this HELO, and a queue id.
const (
	EnvFrom = "a@sender.example"
	EnvRcpt = "u@example.com"
	EnvHelo = "client.example"
)

// The action thresholds of the test configuration.
const config = `options {
  pidfile = "%[1]s/rspamd.pid";
  filters = "";
  dns { nameserver = ["%[2]s"]; timeout = 0.2s; retransmits = 1; }
  local_addrs = [];
  hs_cache_dir = "%[1]s/";
  cache_file = "%[1]s/symbols.cache";
  control_socket = "%[1]s/rspamd.sock mode=0600";
  url_tld = "%[1]s/tld.dat";
  tempdir = "%[1]s/tmp";
  task_timeout = 8s;
}
logging { type = "file"; filename = "%[1]s/rspamd.log"; level = "error"; }
actions { reject = 15; rewrite_subject = 10; add_header = 6; greylist = 4; subject = "***SPAM*** %%s"; }
lua = "%[1]s/gw-test.lua";
worker "normal" { bind_socket = "%[3]s"; count = %[4]d; }
`

const proxyConfig = `worker "rspamd_proxy" {
  bind_socket = "%s"; count = %d; milter = yes; timeout = 120s;
  upstream "local" { default = yes; self_scan = yes; }
}
`

// The rules: plain Lua symbols on the Subject, one of them asking for
// the milter header changes rspamd's modules ask for in production.
const rules = `local function subject_has(task, m)
  local s = task:get_header('Subject')
  return s ~= nil and s:find(m, 1, true) ~= nil
end
-- What gw-scan says of the envelope and the client, as the test sends it.
rspamd_config.GW_TEST_ENVELOPE = {
  callback = function(task)
    local from, rcpts, ip = task:get_from('smtp'), task:get_recipients('smtp'), task:get_from_ip()
    return from ~= nil and from[1].addr == '` + EnvFrom + `' and rcpts ~= nil and rcpts[1].addr == '` + EnvRcpt + `' and
      ip ~= nil and ip:is_valid() and ip:to_string() == '127.0.0.1' and task:get_helo() == '` + EnvHelo + `' and
      task:get_queue_id() ~= nil
  end,
  score = 0.01, description = 'gw test rule: envelope, client and HELO as sent',
}
rspamd_config.GW_TEST_TAG = {
  callback = function(task)
    if subject_has(task, '` + TagMarker + `') then
      task:set_milter_reply({add_headers = {['X-GW-Test-Rule'] = 'hit'}, remove_headers = {['X-Remove-Me'] = 0}})
      return true
    end
    return false
  end,
  score = 7.0, description = 'gw test rule: tag',
}
rspamd_config.GW_TEST_SUBJECT = {
  callback = function(task) return subject_has(task, '` + SubjectMarker + `') end,
  score = 11.0, description = 'gw test rule: rewrite subject',
}
rspamd_config.GW_TEST_GREY = {
  callback = function(task) return subject_has(task, '` + GreyMarker + `') end,
  score = 4.5, description = 'gw test rule: greylist',
}
rspamd_config.GW_TEST_SOFT = {
  callback = function(task)
    if subject_has(task, '` + SoftMarker + `') then
      task:set_pre_result('soft reject', 'gw test rule: try later')
      return true
    end
    return false
  end,
  score = 0.0, description = 'gw test rule: soft reject',
}
`

// Options are the starter's choices; the zero value is one worker, no
// milter, DNS to a closed loopback port.
type Options struct {
	DNS     string // "ip:port" of the tests' unbound; "" a loopback port nothing answers on
	Workers int    // normal worker processes; 0 is 1
	Milter  bool   // also run the proxy worker in milter mode (self-scan)
	Attr    *syscall.SysProcAttr
}

// Rspamd is a running rspamd.
type Rspamd struct {
	Addr   string // the normal worker, "127.0.0.1:port": gw-scan's control/rspamd
	Milter string // the proxy worker in milter mode, when asked for
	Cmd    *exec.Cmd
	Dir    string
}

// Start runs rspamd with its files in dir and waits up to a minute for
// the normal worker to answer /ping.
func Start(dir string, o Options) (*Rspamd, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	r := &Rspamd{Dir: dir}
	var err error
	if r.Addr, err = freePort(); err != nil {
		return nil, err
	}
	dns := o.DNS
	if dns == "" {
		dns = "127.0.0.1:1"
	}
	n := max(o.Workers, 1)
	conf := fmt.Sprintf(config, dir, dns, r.Addr, n)
	if o.Milter {
		if r.Milter, err = freePort(); err != nil {
			return nil, err
		}
		conf += fmt.Sprintf(proxyConfig, r.Milter, n)
	}
	// A short public-suffix list: Debian's full one takes rspamd seconds
	// of CPU to compile at every start, and the tests' domains are these.
	files := map[string]string{"rspamd.conf": conf, "gw-test.lua": rules, "tld.dat": "com\nnet\norg\nexample\ninvalid\ntest\n"}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	attr := o.Attr
	if attr == nil {
		attr = &syscall.SysProcAttr{Setpgid: true}
	}
	// -i: the tests run as root; rspamd would refuse its workers root.
	r.Cmd = exec.Command("rspamd", "-f", "-i", "-c", filepath.Join(dir, "rspamd.conf"))
	r.Cmd.SysProcAttr = attr
	out, _ := os.Create(filepath.Join(dir, "rspamd.out"))
	r.Cmd.Stdout, r.Cmd.Stderr = out, out
	if err := r.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("rspamd: %w", err)
	}
	go r.Cmd.Wait()
	end := time.Now().Add(60 * time.Second)
	for {
		err := r.ping()
		if err == nil {
			return r, nil
		}
		if time.Now().After(end) {
			r.Stop()
			b, _ := os.ReadFile(filepath.Join(dir, "rspamd.out"))
			return nil, fmt.Errorf("rspamd did not answer: %v\n%s", err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *Rspamd) ping() error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + r.Addr + "/ping")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("rspamd /ping: HTTP %d", resp.StatusCode)
	}
	if r.Milter != "" {
		conn, err := net.DialTimeout("tcp", r.Milter, time.Second)
		if err != nil {
			return err
		}
		conn.Close()
	}
	return nil
}

// freePort returns a loopback address no one listens on now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Stop kills rspamd's process group (the main process and its workers).
func (r *Rspamd) Stop() {
	if r.Cmd != nil && r.Cmd.Process != nil {
		syscall.Kill(-r.Cmd.Process.Pid, syscall.SIGKILL)
		r.Cmd.Process.Kill()
	}
}
