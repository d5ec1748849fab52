"""The tests' recipient milter, on pymilter (libmilter): it refuses RCPT
to one address with 550 5.1.1 and takes the others; at the end of the
message it records what it was told in a header field, and replaces one
recipient it took by another (delrcpt, addrcpt).

usage: rcptmilter.py SOCKET REFUSE MOVE-FROM MOVE-TO
"""
import sys

import Milter

SOCKET, REFUSE, MOVE_FROM, MOVE_TO = sys.argv[1:5]


class RcptMilter(Milter.Base):
    def envfrom(self, sender, *params):
        self.sender, self.rcpts = sender, []
        return Milter.CONTINUE

    def envrcpt(self, to, *params):
        if to.strip("<>").lower() == REFUSE:
            self.setreply("550", "5.1.1", "no mailbox here by that name")
            return Milter.REJECT
        self.rcpts.append(to)
        return Milter.CONTINUE

    def eom(self):
        self.addheader("X-Rcpt-Milter", "from=%s rcpts=%s" % (self.sender, ",".join(self.rcpts)))
        if "<%s>" % MOVE_FROM in self.rcpts:
            self.delrcpt("<%s>" % MOVE_FROM)
            self.addrcpt("<%s>" % MOVE_TO)
        return Milter.ACCEPT


Milter.factory = RcptMilter
Milter.set_flags(Milter.ADDHDRS | Milter.ADDRCPT | Milter.DELRCPT)
Milter.runmilter("rcptmilter", SOCKET, 60)
