#!/bin/sh
# Installs the Debian packages gw's tests drive as real peers. Idempotent:
# packages already present are not fetched again. Needs root (CI runs as
# root); without root it only reports what is missing.
set -eu

# One package a peer; each line says which tests need it.
packages="
strace          # crash tests: fault injection at chosen syscalls
util-linux      # unshare: private mount namespaces for disk-full tests
mandoc          # make check: man page lint
ucspi-tcp       # tcprules/tcprulescheck/tcpserver: ACL differential tests
swaks           # gw-smtpd e2e tests: the SMTP client
libnet-ssleay-perl # swaks --tls: STARTTLS and implicit TLS tests of gw-smtpd
openssl         # gw-smtpd e2e tests: openssl s_client -starttls smtp
python3         # gw-smtpd e2e tests: Python's smtplib as a second client
postfix         # smtp-sink: the fast receiver of gw-send's e2e tests and of make bench
clamav-daemon   # gw-scan e2e tests: clamd, run by the tests with a signature file they write
spamd           # gw-scan e2e tests: spamd with Debian's shipped rules (GTUBE), no sa-update
runit           # runsvdir/runsv/sv/svlogd/chpst: the scenario tests supervise gw-instance's service dirs
daemontools     # svscan/supervise/svc/multilog/setuidgid/envdir: one scenario under daemontools
unbound         # the tests' DNS server on loopback (lib/dns/dnstest): MX, A, AAAA, null MX, DNSBL zones
ldnsutils       # gw-send DANE tests: ldns-keygen and ldns-signzone sign the test zone unbound serves and validates
python3-aiosmtpd # gw-send e2e tests: the scriptable receiver (4xx/5xx at chosen stages, hangs mid-DATA)
redis-server    # fleet tests: the shared state of two gw hosts, run on loopback with no persistence
python3-dkim    # lib/dkim, lib/arc: dkimpy's dkimsign/dkimverify/arcsign/arcverify, an independent DKIM and ARC
python3-nacl    # dkimpy's Ed25519 signatures (RFC 8463)
python3-authheaders # lib/authres: Authentication-Results parsed by another implementation
python3-milter  # gw-smtpd milter tests: pymilter (libmilter) runs the test milter that refuses one recipient at RCPT
opendkim-tools  # lib/dkim: opendkim-genkey and opendkim-testkey, a second DKIM implementation
opendkim        # gw-smtpd milter tests: OpenDKIM signing and verifying through control/milters
opendmarc       # gw-smtpd milter tests: OpenDMARC's Authentication-Results and RejectFailures
clamav-milter   # gw-smtpd milter tests: clamav-milter on the clamd the tests start
rspamd          # gw-scan e2e tests: rspamd's normal worker on loopback, the tests' own configuration, no redis
amavisd-new     # make bench: the seeds' pipeline, Postfix → amavisd-new (clamd, SpamAssassin) → Postfix, a private instance
spamassassin    # amavisd-new's spam checks: Mail::SpamAssassin loaded in amavisd's own processes
"

want=$(printf '%s\n' "$packages" | sed 's/#.*//' | tr -s ' \n' '\n' | sed '/^$/d')
missing=""
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "test-peers: missing packages:$missing (run as root to install)" >&2
	exit 111
fi
export DEBIAN_FRONTEND=noninteractive
# The daemons among these packages are run by the tests, on loopback, with
# their own configuration; none may start as a system service on install
# (unbound would listen on port 53 and resolve through the Internet).
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
# postfix: install the binaries only, never a running mail system.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq >/dev/null || apt-get update
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
	apt-get install -y --no-install-recommends $missing
