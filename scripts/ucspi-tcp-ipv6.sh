#!/bin/sh
# Unpacks Debian's IPv6 build of ucspi-tcp (tcprules, tcprulescheck) into a
# private directory, for the ACL tests to compare gw-tcprules with on IPv6
# rules. The package conflicts with ucspi-tcp, so it is never installed:
# its binaries are only unpacked. Idempotent.
set -eu
dir=${GW_UCSPI6:-/var/cache/gw-tests/ucspi-tcp-ipv6}
[ -x "$dir/usr/bin/tcprulescheck" ] && exit 0
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
# _apt cannot write into a private temporary directory: download as root.
apt-get download -o APT::Sandbox::User=root ucspi-tcp-ipv6 >/dev/null 2>&1 || {
	apt-get update -qq >/dev/null
	apt-get download -o APT::Sandbox::User=root ucspi-tcp-ipv6 >/dev/null
}
dpkg -x ucspi-tcp-ipv6_*.deb "$dir"
