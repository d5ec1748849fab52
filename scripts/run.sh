#!/bin/sh
# make run: a whole gw instance under ./run, on loopback high ports, in the
# foreground under gw-instance run (the embedded supervisor), no root
# needed. Creates the instance the first time and reuses it afterwards;
# rm -rf run/ starts afresh. Ports: GW_RUN_SMTP (default 2525) for the
# listener, GW_RUN_SINK (default 2526) where mail for example.com goes.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/bin
root=$top/run
smtp=${GW_RUN_SMTP:-2525}
sink=${GW_RUN_SINK:-2526}

mkdir -p "$root"
"$bin/gw-instance" --root "$root" create main --exist >/dev/null \
	--me gw.localhost --rcpthosts example.com \
	--smtp "127.0.0.1:$smtp" --bin-dir "$bin"
ctl=$root/main/control
[ -e "$ctl/smtproutes" ] || echo "example.com:127.0.0.1:$sink" >"$ctl/smtproutes"
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
  $bin/gw-qctl --queue $root/main/queue --domain example.com retry   # now, not at the next retry
Watch the queue:
  $bin/gw-qstat --root $root --instance main list
  $bin/gw-instance --root $root list

Logs follow, each line behind its daemon's name. Stop with Ctrl-C.
EOT
exec "$bin/gw-instance" --root "$root" run main
