#!/bin/sh
# make run: a gw queue under ./run with its injector in the foreground, no
# root needed. Prints how to put a message in and how to watch the queue.
# (The listeners and the delivery runner join it as they are built.)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/bin
q=$top/run/main/queue

"$bin/gw-queue" --init "$q"
cat <<EOT
gw: queue $q, injector socket $q/lock/inject.sock

Put a message in (qmail-queue's interface):
  printf 'Subject: hello\n\nhi\n' | GW_QUEUE=$q $bin/gw-queue 1< <(printf 'Fme@example.org\0Tyou@example.net\0\0')
Watch the queue:
  $bin/gw-qstat --queue $q
  $bin/gw-qstat --queue $q list
Stop with Ctrl-C.
EOT
exec "$bin/gw-queued" --queue "$q"
