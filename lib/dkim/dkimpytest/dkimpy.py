# Runs dkimpy (Debian python3-dkim), an independent DKIM and ARC
# implementation, for gw's tests: its DNS queries go to the test's unbound
# on loopback (GW_DNS), never elsewhere.
#
#   dkimpy.py verify           message on stdin; one line a signature: pass|fail
#   dkimpy.py arcverify        message on stdin; "cv=<pass|fail|none> <reason>"
#   dkimpy.py arcams           message on stdin; one line an instance,
#                              newest first: "i=<n> ams=<pass|fail>"
#   dkimpy.py sign SEL DOM KEY ALG    prints the DKIM-Signature field
#   dkimpy.py arcsign SEL DOM KEY AUTHSERV   prints the ARC set's fields
import os
import sys

import dkim
import dns.resolver

host, port = os.environ["GW_DNS"].rsplit(":", 1)
resolver = dns.resolver.Resolver(configure=False)
resolver.nameservers = [host]
resolver.port = int(port)


def txt(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    try:
        ans = resolver.resolve(name, "TXT", lifetime=timeout)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    return b"".join(ans[0].strings)


msg = sys.stdin.buffer.read()
cmd = sys.argv[1]
if cmd == "verify":
    d = dkim.DKIM(msg)
    n = len([h for h in d.headers if h[0].lower() == b"dkim-signature"])
    for i in range(n):
        try:
            ok = d.verify(idx=i, dnsfunc=txt)
        except dkim.DKIMException as e:
            print("fail", e)
            continue
        print("pass" if ok else "fail")
elif cmd == "arcverify":
    cv, results, reason = dkim.arc_verify(msg, dnsfunc=txt)
    print("cv=" + cv.decode(), reason)
elif cmd == "arcams":
    cv, results, reason = dkim.arc_verify(msg, dnsfunc=txt)
    for r in results:
        print("i=%d ams=%s" % (r["instance"], "pass" if r["ams-valid"] else "fail"))
elif cmd == "sign":
    sel, dom, keyfile, alg = sys.argv[2:6]
    key = open(keyfile, "rb").read()
    sig = dkim.sign(msg, sel.encode(), dom.encode(), key,
                    canonicalize=(b"relaxed", b"relaxed"),
                    signature_algorithm=alg.encode(),
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    sys.stdout.buffer.write(sig)
elif cmd == "arcsign":
    sel, dom, keyfile, srv = sys.argv[2:6]
    key = open(keyfile, "rb").read()
    fields = dkim.arc_sign(msg, sel.encode(), dom.encode(), key, srv.encode())
    for f in fields:
        sys.stdout.buffer.write(f)
else:
    sys.exit("unknown command " + cmd)
