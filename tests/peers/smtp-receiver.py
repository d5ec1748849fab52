#!/usr/bin/python3
"""smtp-receiver: the scriptable SMTP server of gw-send's end-to-end tests.

A real SMTP server (aiosmtpd, Debian's python3-aiosmtpd) that answers by
rules written in the addresses, so a test chooses the reply and the stage
at which it comes by the names it gives its sender and recipients.

Usage: smtp-receiver.py [--port N] [--hostname NAME] SPOOL_DIR

It listens on 127.0.0.1, on port N (default 0: one the kernel picks), and
prints the port it listens on, alone on a line on stdout, once it accepts
connections. It exits when its standard input reaches end of file (the
test that started it is gone) or on a signal.

Rules, by the local part's prefix (case-sensitive), each at its stage:

  MAIL FROM  mail5…  553 5.1.8 sender refused
             mail4…  451 4.1.8 sender refused for now
  RCPT TO    bad…    550 5.1.1 no such user       (that recipient only)
             later…  451 4.2.0 try again later    (that recipient only)
  after the  hang…   the message is read to its final dot, and then no
  final dot          answer ever comes (until the client goes or the
                     receiver is killed); nothing is kept
             data5…  554 5.6.0 message refused after DATA
             data4…  451 4.3.0 message deferred after DATA

The after-DATA rules look at the accepted recipients of the transaction,
hang first, then data5, then data4: one reply covers all of them, as SMTP
gives one reply to the whole message. Anything else is accepted.

Every message accepted gets one file in SPOOL_DIR, NNNNNN.json (numbered
in the order the messages were accepted), written under a name starting
with "." and then renamed, so a reader sees whole files only:

  {"mail_from": "a@b.test", "rcpt_tos": ["c@d.test"], "data_base64": "…"}

mail_from is "" for the null sender <>; data_base64 is the message as it
came, dot-stuffing removed, CRLF line ends kept, in base64 (8-bit bodies
and SMTPUTF8 addresses pass unchanged).

Besides aiosmtpd's defaults (SIZE, 8BITMIME, no STARTTLS, no AUTH) it
offers SMTPUTF8 and PIPELINING (aiosmtpd reads commands in order from one
stream, so pipelined commands work; 1.4.3 does not say so by itself), takes
messages up to 100 MiB and lines up to 1 MiB, and never times a client out
within a test's life. It logs each session to stderr.
"""

import argparse
import asyncio
import base64
import json
import logging
import os
import signal
import sys

try:
    from aiosmtpd.smtp import SMTP
except ImportError as e:
    sys.stderr.write(
        "smtp-receiver: cannot import aiosmtpd (%s): install Debian's "
        "python3-aiosmtpd (scripts/test-peers.sh)\n" % e)
    sys.exit(111)

DATA_SIZE_LIMIT = 100 << 20
IDLE_TIMEOUT = 3600  # seconds; tests end long before

log = logging.getLogger("smtp-receiver")


def local_part(address):
    """The part of address before its last @ ("" for the null sender)."""
    if address in ("", "<>"):
        return ""
    return address.rpartition("@")[0] if "@" in address else address


class Receiver(SMTP):
    # RFC 5321 allows 1000 octets a line; the peer under test is not to be
    # judged on that here, so long lines are taken as a lenient MTA would.
    line_length_limit = 1 << 20


class Rules:
    """aiosmtpd handler hooks applying the rules above."""

    def __init__(self, spool):
        self.spool = spool
        self.count = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        # responses ends with "250 HELP": offer PIPELINING before it.
        return responses[:-1] + ["250-PIPELINING"] + responses[-1:]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        lp = local_part(address)
        if lp.startswith("mail5"):
            log.info("MAIL %s: refused (mail5)", address)
            return "553 5.1.8 sender refused"
        if lp.startswith("mail4"):
            log.info("MAIL %s: deferred (mail4)", address)
            return "451 4.1.8 sender refused for now"
        # aiosmtpd keeps the null sender as "<>", which RCPT needs non-empty.
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        lp = local_part(address)
        if lp.startswith("bad"):
            return "550 5.1.1 no such user"
        if lp.startswith("later"):
            return "451 4.2.0 try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        parts = [local_part(r) for r in envelope.rcpt_tos]
        if any(p.startswith("hang") for p in parts):
            log.info("DATA for %s: hanging", envelope.rcpt_tos)
            await asyncio.Event().wait()  # cancelled when the client goes
        if any(p.startswith("data5") for p in parts):
            log.info("DATA for %s: refused (data5)", envelope.rcpt_tos)
            return "554 5.6.0 message refused after DATA"
        if any(p.startswith("data4") for p in parts):
            log.info("DATA for %s: deferred (data4)", envelope.rcpt_tos)
            return "451 4.3.0 message deferred after DATA"
        self.count += 1
        name = "%06d.json" % self.count
        msg = {
            "mail_from": "" if envelope.mail_from == "<>" else envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data_base64": base64.b64encode(envelope.original_content).decode("ascii"),
        }
        tmp = os.path.join(self.spool, "." + name)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(msg, f)
        os.rename(tmp, os.path.join(self.spool, name))
        log.info("DATA for %s: kept as %s", envelope.rcpt_tos, name)
        return "250 2.0.0 OK kept as " + name


async def serve(args):
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def stop(*_):
        if not done.done():
            done.set_result(None)

    rules = Rules(args.spool)
    server = await loop.create_server(
        lambda: Receiver(rules, hostname=args.hostname, loop=loop,
                         data_size_limit=DATA_SIZE_LIMIT, enable_SMTPUTF8=True,
                         decode_data=False, timeout=IDLE_TIMEOUT),
        host="127.0.0.1", port=args.port)

    def stdin_readable():
        try:
            if os.read(sys.stdin.fileno(), 4096):
                return
        except OSError:
            pass
        loop.remove_reader(sys.stdin.fileno())
        stop()

    loop.add_reader(sys.stdin.fileno(), stdin_readable)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)

    port = server.sockets[0].getsockname()[1]
    log.info("listening on 127.0.0.1:%d, keeping messages in %s", port, args.spool)
    sys.stdout.write("%d\n" % port)
    sys.stdout.flush()
    await done
    server.close()


def main():
    p = argparse.ArgumentParser(description="gw-send's scriptable SMTP test receiver")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any, printed)")
    p.add_argument("--hostname", default="receiver.test", help="name in the greeting and EHLO reply")
    p.add_argument("spool", help="directory that receives one file per accepted message")
    args = p.parse_args()
    if not os.path.isdir(args.spool):
        p.error("%s is not a directory" % args.spool)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
