#!/bin/sh
# make run: a whole gw instance under ./run, on loopback high ports, in the
# foreground under gw-instance run (the embedded supervisor), no root
# needed. Creates the instance the first time and reuses it afterwards;
# rm -rf run/ starts afresh. Ports (README.md): GW_RUN_SMTP (default 2525)
# for the listener, GW_RUN_SINK (default 2526) where mail for example.com
# goes. Given on a later run, they replace the ports the instance has;
# not given, the instance keeps its own. GW_RUN_ROOT (default ./run) is
# where the instance lives; GW_RUN_BIN (default ./bin) where the programs are.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${GW_RUN_BIN:-$top/bin}
root=${GW_RUN_ROOT:-$top/run}
ctl=$root/main/control

mkdir -p "$root"
if [ ! -e "$ctl/listeners" ]; then
	"$bin/gw-instance" --root "$root" create main --exist >/dev/null \
		--me gw.localhost --rcpthosts example.com \
		--smtp "127.0.0.1:${GW_RUN_SMTP:-2525}" --bin-dir "$bin"
elif [ -n "${GW_RUN_SMTP:-}" ]; then
	"$bin/gw-instance" --root "$root" listen main smtpd smtp "127.0.0.1:$GW_RUN_SMTP"
fi
if [ ! -e "$ctl/smtproutes" ] || [ -n "${GW_RUN_SINK:-}" ]; then
	# Other lines of smtproutes are the admin's: only example.com's moves.
	{ [ -e "$ctl/smtproutes" ] && grep -v '^example\.com:' "$ctl/smtproutes" || true
	  echo "example.com:127.0.0.1:${GW_RUN_SINK:-2526}"; } >"$ctl/smtproutes.tmp"
	mv "$ctl/smtproutes.tmp" "$ctl/smtproutes"
fi
[ -e "$ctl/backoffmin" ] || echo 5 >"$ctl/backoffmin"
[ -e "$ctl/backoffmax" ] || echo 30 >"$ctl/backoffmax"
"$bin/gw-instance" --root "$root" check main

listen=$(sed -n 's/^smtpd smtp \([^ ]*\).*/\1/p' "$ctl/listeners")
route=$(sed -n 's/^example.com://p' "$ctl/smtproutes")
# smtp-sink refuses to run as root without a user to become.
sinkuser=
[ "$(id -u)" = 0 ] && sinkuser="-u nobody "
cat <<EOT
gw: instance $root/main
  SMTP listener  $listen  (relays for 127.*, accepts example.com from anyone)
  deliveries     example.com -> $route (smtproutes); other domains by MX

Send a test message:
  swaks --server $listen --from you@example.org --to test@example.com
Receive it (optional; until then it waits in the queue, deferred):
  smtp-sink $sinkuser-c ${route%:*}:${route##*:} 100
  $bin/gw-qctl --root $root --instance main --domain example.com retry   # now, not at the next retry
Watch the queue, follow a message, see the settings:
  $bin/gw-qstat --root $root --instance main list
  $bin/gw-qstat --root $root --instance main show QID
  $bin/gw-qstat --root $root --instance main trace QID   # its log lines, also by Message-ID
  $bin/gw-send --root $root --instance main --explain test@example.com
  $bin/gw-instance --root $root config main -n
  $bin/gw-instance --root $root list
Test a session from another address, each decision explained, nothing queued:
  printf 'HELO me\nMAIL FROM:<you@example.org>\nRCPT TO:<test@example.com>\nRCPT TO:<x@example.net>\nQUIT\n' | $bin/gw-smtpd --root $root --instance main --test-session --client 192.0.2.7
Other ports: GW_RUN_SMTP=PORT GW_RUN_SINK=PORT make run

Logs follow, each line behind its daemon's name. Stop with Ctrl-C.
EOT
exec "$bin/gw-instance" --root "$root" run main
