"""A small scriptable fake mail store (LMTP, IMAP or POP3) for fault injection in tests.

Real Dovecot is what the integration tests deliver to and log in to; this fake is only for
what a real store will not do on demand: refuse every recipient, answer 4xx after DATA,
greet with 421, close after MAIL or in the middle of DATA, answer too slowly, or hang.

    store = FakeStore("lmtp").start()          # a thread, on a free port of 127.0.0.1
    store.on("RCPT", "550 5.1.1 <{rcpt}> User doesn't exist: {rcpt}", times=2)
    store.on("DATA", close_after_bytes=100)    # close in the middle of the message
    ... point the proxy at store.port, send mail ...
    store.delivered("amy@example.test")        # Message-IDs stored for amy, in order
    store.violations                           # MAIL given inside an open transaction
    store.stop()

Without rules the store is correct and behaves like Dovecot 2.3 (same reply texts where
they matter): LMTP with PIPELINING and ENHANCEDSTATUSCODES, a transaction state that lasts
across transactions on one connection (so "503 5.5.0 MAIL already given" shows a proxy that
reuses a connection with a transaction still open), dot-unstuffing, one reply per accepted
recipient after the message, RSET, NOOP, QUIT; IMAP greeting, CAPABILITY, ID, LOGIN,
AUTHENTICATE PLAIN (with or without an initial response; literals, LITERAL+), LOGOUT, a few
post-login commands; POP3 greeting, CAPA, USER/PASS, AUTH PLAIN, XCLIENT, QUIT.
Commands sent together (pipelined) are read from one buffer and answered each in order.

Rules (on()) are tried in the order they were added; the first whose command, match,
connection and remaining count fit the command decides how it is answered:

  command  the verb ("MAIL", "RCPT", "DATA", "LOGIN", "PASS", ...), or
           "GREETING" (a connection was accepted), or, in LMTP,
           "EOM"      the end of a message: asked once per accepted recipient, in RCPT order,
                      with `match` tested against the recipient's address.
  reply    the answer instead of the default: a string (lines separated by \\n or \\r\\n)
           or a list of lines; "{tag}" is the IMAP tag, "{rcpt}" the LMTP recipient of RCPT
           and EOM, "{arg}" the rest of the command line.  None: the default answer.
           The answer counts as given: a 2xx to RCPT accepts the recipient, 354 to DATA
           starts the message, 250 to EOM stores the message for that recipient, a tagged
           OK / +OK to a login logs in.  A greeting that is not positive (not 220, "* OK",
           "* PREAUTH" or "+OK") is followed by a close unless `close` says otherwise.
  delay    seconds to wait before acting.  If the client has gone meanwhile the store does
           not answer (and stores nothing).
  close    "before": close instead of answering: the command was read, nothing is done
                     (a store that dies after reading it);
           "reset":  the same with a TCP RST (SO_LINGER 0), which is what a peer sees when
                     a store closes without reading what was sent to it;
           "after":  answer, then close;
           "never":  (GREETING only) keep serving after a negative greeting.
  hang     never answer: the connection stays open, input is read and dropped, until the
           client closes or the store stops.
  close_after_bytes, hang_after_bytes
           (DATA only) answer 354, read this many bytes of the message, then close / hang.
  match    a regular expression searched in the command line (EOM: the recipient address).
  times    the rule is used this many times, then it is spent (None: forever).
  connection  the rule applies only on the Nth connection accepted (1-based).

What the store saw:
  connections       how many connections it accepted
  exchanges()       every command (and the greeting) with the answer given, in order; the
                    answer is None when the store closed or hung instead.  Passwords and SASL
                    responses are masked ("***").
  stored            LMTP: one Stored per message completed (DATA ended with "."), with the
                    Message-ID and the recipients that the store answered 250 after DATA
  delivered(rcpt)   LMTP: the Message-IDs stored for one recipient (a message stored twice
                    appears twice)
  violations        LMTP: protocol misuse by the client (MAIL inside an open transaction)
  logins            IMAP/POP3: (connection, user, accepted)
"""

import base64
import os
import re
import select
import socket
import struct
import sys
import threading
import time

HOST = "127.0.0.1"
_POLL = 0.05

_POSITIVE_GREETING = re.compile(r"^(220|\* OK|\* PREAUTH|\+OK)", re.I)
_LITERAL_AT_END = re.compile(rb"\{(\d+)(\+?)\}$")
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*<([^>\r\n]*)>", re.I | re.M)


class _Closed(Exception):
    """The connection is over (closed by either side, or the store is stopping)."""


class Rule:
    """One scripted behaviour (see the module's docstring)."""

    CLOSES = (None, "before", "after", "reset", "never")

    def __init__(self, command, reply=None, match=None, delay=0.0, close=None, hang=False,
                 close_after_bytes=None, hang_after_bytes=None, times=None, connection=None):
        if close not in self.CLOSES:
            raise ValueError("close must be one of %r" % (self.CLOSES,))
        if (close_after_bytes is not None or hang_after_bytes is not None) and \
                command.upper() != "DATA":
            raise ValueError("close_after_bytes/hang_after_bytes belong to DATA")
        self.command = command.upper()
        self.reply = reply
        self.match = re.compile(match, re.I) if isinstance(match, str) else match
        self.delay = float(delay or 0)
        self.close = close
        self.hang = hang
        self.close_after_bytes = close_after_bytes
        self.hang_after_bytes = hang_after_bytes
        self.times = times
        self.connection = connection
        self.used = 0

    def fits(self, command, text, connection):
        if self.command != command:
            return False
        if self.times is not None and self.used >= self.times:
            return False
        if self.connection is not None and self.connection != connection:
            return False
        return self.match is None or bool(self.match.search(text))

    def __repr__(self):
        return "Rule(%s)" % ", ".join("%s=%r" % (k, v) for k, v in vars(self).items()
                                      if v not in (None, False, 0, 0.0) or k == "command")


class Exchange:
    """A command the store received and what it answered (None: no answer)."""

    __slots__ = ("connection", "command", "line", "reply", "at")

    def __init__(self, connection, command, line):
        self.connection = connection
        self.command = command
        self.line = line
        self.reply = None
        self.at = time.monotonic()

    @property
    def status(self):
        """The last line of the answer ("" when there was none)."""
        return self.reply.split("\r\n")[-1] if self.reply is not None else ""

    def __repr__(self):
        return "#%d %s %r -> %r" % (self.connection, self.command, self.line, self.reply)


class Stored:
    """One LMTP message the store received in full."""

    def __init__(self, connection, sender, data):
        self.connection = connection
        self.sender = sender
        self.data = data
        m = _MESSAGE_ID.search(data.split(b"\r\n\r\n", 1)[0])
        self.message_id = m.group(1).decode("utf-8", "replace") if m else None
        self.recipients = []  # answered 250 after DATA, in order
        self.refused = {}     # recipient -> the other final answer it got
        self.replies = {}     # recipient -> its final answer (last line), 250 or not

    def __repr__(self):
        return "Stored(#%d %s to %r, refused %r)" % (self.connection, self.message_id,
                                                     self.recipients, self.refused)


def _lines(text):
    if isinstance(text, (list, tuple)):
        return [str(x) for x in text]
    return str(text).replace("\r\n", "\n").rstrip("\n").split("\n")


class _Connection:
    """One accepted connection; a protocol subclass implements serve()."""

    def __init__(self, store, sock, number):
        self.store = store
        self.sock = sock
        self.number = number
        self.buf = b""
        self.finished = False

    # -- input ----------------------------------------------------------------

    def _fill(self):
        while True:
            if self.store._stopping.is_set():
                raise _Closed()
            try:
                ready, _, _ = select.select([self.sock], [], [], _POLL)
            except (OSError, ValueError):
                raise _Closed()
            if not ready:
                continue
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                raise _Closed()
            self.buf += chunk
            return

    def read_line(self):
        """One line without its line end (CRLF, or a bare LF)."""
        while b"\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\n")
        return line[:-1] if line.endswith(b"\r") else line

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def peer_gone(self):
        """True if the client has closed (only looks; buffered input stays)."""
        try:
            ready, _, _ = select.select([self.sock], [], [], 0)
            if not ready:
                return False
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # -- output ---------------------------------------------------------------

    def send_lines(self, lines):
        data = "".join(line + "\r\n" for line in lines).encode("utf-8", "surrogateescape")
        try:
            self.sock.sendall(data)
        except OSError:
            raise _Closed()

    def close(self, reset=False):
        try:
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     struct.pack("ii", 1, 0))
            else:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def hang(self):
        """Answer nothing until the client closes or the store stops."""
        while True:
            self.buf = b""
            self._fill()

    def wait(self, seconds):
        if seconds > 0 and self.store._stopping.wait(seconds):
            raise _Closed()

    # -- scripted answers -----------------------------------------------------

    def answer(self, command, line, default, match_text=None, logged=None, **fields):
        """Decide the answer to one command: (lines to send, the rule, the log entry).

        Delay, hang and close-before happen here (the latter two end the connection by
        raising _Closed).  The caller updates its state from the answer, then calls
        respond().  `fields` fill the reply's {placeholders}.
        """
        entry = self.store._record(self.number, command, logged if logged is not None else line)
        rule = self.store._take_rule(command, match_text if match_text is not None else line,
                                     self.number)
        if rule is not None:
            if rule.delay:
                self.wait(rule.delay)
                if self.peer_gone():
                    raise _Closed()
            if rule.hang:
                self.hang()
            if rule.close in ("before", "reset"):
                self.close(reset=rule.close == "reset")
                raise _Closed()
        text = default if rule is None or rule.reply is None else rule.reply
        lines = _lines(text)
        for key, value in fields.items():
            lines = [x.replace("{%s}" % key, value) for x in lines]
        return lines, rule, entry

    def respond(self, lines, rule, entry):
        entry.reply = "\r\n".join(lines)
        self.store._echo(entry)
        self.send_lines(lines)
        if rule is not None and rule.close == "after":
            self.close()
            raise _Closed()

    def greet(self, default):
        lines, rule, entry = self.answer("GREETING", "", default)
        self.respond(lines, rule, entry)
        if (rule is None or rule.close != "never") and not _POSITIVE_GREETING.match(lines[0]):
            self.close()
            raise _Closed()

    def run(self):
        try:
            self.serve()
        except _Closed:
            pass
        except Exception as e:  # noqa: BLE001 - a broken fake must be visible, not silent
            self.store._error("connection %d: %r" % (self.number, e))
        finally:
            self.close()
            self.finished = True


# ---------------------------------------------------------------------------
# LMTP.

def _address(arg):
    m = re.search(r"<([^>]*)>", arg)
    return m.group(1) if m else arg.split(":", 1)[-1].strip().split(" ")[0]


class _LmtpConnection(_Connection):
    def serve(self):
        self.lhlo = False
        self.mail_from = None
        self.rcpts = []
        self.greet("220 %s Fake LMTP store %s ready." % (self.store.hostname, self.store.name))
        while True:
            raw = self.read_line()
            line = raw.decode("utf-8", "surrogateescape")
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            handler = getattr(self, "cmd_" + verb, None)
            if handler is None or not verb.isalpha():
                self.respond(*self.answer(verb, line, "500 5.5.1 Unknown command"))
                continue
            handler(line, arg)

    def reset(self):
        self.mail_from = None
        self.rcpts = []

    def cmd_LHLO(self, line, arg):
        default = ["250-" + self.store.hostname, "250-8BITMIME", "250-ENHANCEDSTATUSCODES",
                   "250 PIPELINING"]
        lines, rule, entry = self.answer("LHLO", line, default, arg=arg)
        if lines[-1].startswith("250"):
            self.lhlo = True
            self.reset()
        self.respond(lines, rule, entry)

    def cmd_MAIL(self, line, arg):
        if self.mail_from is not None:
            self.store._violation("connection %d: MAIL inside an open transaction (from %r, "
                                  "%d recipients): %r" % (self.number, self.mail_from,
                                                          len(self.rcpts), line))
            default = "503 5.5.0 MAIL already given"
        elif not self.lhlo:
            default = "503 5.5.1 Send LHLO first"
        else:
            default = "250 2.1.0 OK"
        lines, rule, entry = self.answer("MAIL", line, default, arg=arg)
        if lines[-1].startswith("2") and self.mail_from is None:
            self.mail_from = _address(arg)
            self.rcpts = []
        self.respond(lines, rule, entry)

    def cmd_RCPT(self, line, arg):
        rcpt = _address(arg)
        if self.mail_from is None:
            default = "503 5.5.0 MAIL needed first"
        elif not self.store.knows(rcpt):
            default = "550 5.1.1 <%s> User doesn't exist: %s" % (rcpt, rcpt)
        else:
            default = "250 2.1.5 OK"
        lines, rule, entry = self.answer("RCPT", line, default, rcpt=rcpt, arg=arg)
        if lines[-1].startswith("2") and self.mail_from is not None:
            self.rcpts.append(rcpt)
        self.respond(lines, rule, entry)

    def cmd_DATA(self, line, arg):
        if self.mail_from is None:
            default = "503 5.5.0 MAIL needed first"
        elif not self.rcpts:
            default = "503 5.5.0 No valid recipients"  # Dovecot keeps the transaction open
        else:
            default = "354 OK"
        lines, rule, entry = self.answer("DATA", line, default, arg=arg)
        self.respond(lines, rule, entry)
        if not lines[-1].startswith("354"):
            return
        limit, action = None, None
        if rule is not None and rule.close_after_bytes is not None:
            limit, action = rule.close_after_bytes, "close"
        elif rule is not None and rule.hang_after_bytes is not None:
            limit, action = rule.hang_after_bytes, "hang"
        data = self.read_message(limit)
        if data is None:  # the scripted fault, in the middle of the message
            if action == "hang":
                self.hang()
            self.close()
            raise _Closed()
        stored = Stored(self.number, self.mail_from, data)
        self.store._add_stored(stored)
        rcpts, self.rcpts = self.rcpts, []
        self.mail_from = None
        for rcpt in rcpts:
            default = "250 2.0.0 <%s> %s Saved" % (rcpt, self.store._next_id())
            lines, rule, entry = self.answer("EOM", rcpt, default, match_text=rcpt, rcpt=rcpt)
            with self.store._lock:
                stored.replies[rcpt] = lines[-1]
                if lines[-1].startswith("250"):
                    stored.recipients.append(rcpt)
                else:
                    stored.refused[rcpt] = lines[-1]
            self.respond(lines, rule, entry)

    def read_message(self, limit):
        """The message up to the lone "." line, dot-unstuffed; None once `limit` bytes of it
        (as sent, stuffing included) have been read, when a limit is given.  Only CRLF ends
        a line here: a "." after a bare LF is message text."""
        out = []
        seen = 0
        line_start = True  # the previous line ended with CRLF
        while True:
            while b"\n" not in self.buf:
                if limit is not None and seen + len(self.buf) >= limit:
                    return None
                self._fill()
            line, _, rest = self.buf.partition(b"\n")
            if limit is not None and seen + len(line) + 1 > limit:
                return None
            self.buf = rest
            seen += len(line) + 1
            if line_start and line == b".\r":
                return b"".join(out)
            if line_start and line.startswith(b"."):
                line = line[1:]
            line_start = line.endswith(b"\r")
            out.append(line + b"\n")

    def cmd_RSET(self, line, arg):
        lines, rule, entry = self.answer("RSET", line, "250 2.0.0 OK")
        if lines[-1].startswith("2"):
            self.reset()
        self.respond(lines, rule, entry)

    def cmd_NOOP(self, line, arg):
        self.respond(*self.answer("NOOP", line, "250 2.0.0 OK"))

    def cmd_VRFY(self, line, arg):
        self.respond(*self.answer("VRFY", line, "252 2.3.3 Try RCPT instead"))

    def cmd_QUIT(self, line, arg):
        self.respond(*self.answer("QUIT", line, "221 2.0.0 Bye"))
        self.close()
        raise _Closed()


# ---------------------------------------------------------------------------
# IMAP.

def _imap_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _imap_args(text):
    """Split IMAP astrings (atoms and quoted strings; literals arrive already quoted)."""
    args = []
    i = 0
    while i < len(text):
        if text[i] == " ":
            i += 1
        elif text[i] == '"':
            i += 1
            value = []
            while i < len(text) and text[i] != '"':
                if text[i] == "\\" and i + 1 < len(text):
                    i += 1
                value.append(text[i])
                i += 1
            args.append("".join(value))
            i += 1
        else:
            j = text.find(" ", i)
            j = len(text) if j < 0 else j
            args.append(text[i:j])
            i = j
    return args


def _sasl_plain(response):
    """(authcid, password) from a base64 SASL PLAIN response, or None."""
    try:
        parts = base64.b64decode(response, validate=True).decode("utf-8").split("\0")
    except (ValueError, UnicodeDecodeError):
        return None
    return (parts[1], parts[2]) if len(parts) == 3 else None


IMAP_CAPABILITY = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN"


class _ImapConnection(_Connection):
    def read_command(self):
        """One command, its literals inlined as quoted strings."""
        out = b""
        while True:
            line = self.read_line()
            m = _LITERAL_AT_END.search(line)
            if not m:
                return (out + line).decode("utf-8", "surrogateescape")
            if not m.group(2):
                self.send_lines(["+ OK"])
            literal = self.read_exact(int(m.group(1))).decode("utf-8", "surrogateescape")
            out += line[:m.start()] + _imap_quote(literal).encode("utf-8", "surrogateescape")

    def serve(self):
        self.logged_in = False
        self.greet("* OK [CAPABILITY %s] Fake IMAP store %s ready." % (IMAP_CAPABILITY,
                                                                     self.store.name))
        while True:
            line = self.read_command()
            tag, _, rest = line.partition(" ")
            verb, _, arg = rest.partition(" ")
            verb = verb.upper()
            if not tag or not verb:
                self.respond(*self.answer("", line, "* BAD Error in IMAP command."))
                continue
            handler = getattr(self, "cmd_" + verb, None)
            if handler is not None:
                handler(tag, line, arg)
            elif self.logged_in:
                self.respond(*self.answer(verb, line, "{tag} OK %s completed." % verb,
                                          tag=tag, arg=arg))
            else:
                self.respond(*self.answer(verb, line,
                                          "{tag} BAD Error in IMAP command received by server.",
                                          tag=tag, arg=arg))

    def cmd_CAPABILITY(self, tag, line, arg):
        self.respond(*self.answer("CAPABILITY", line,
                                  ["* CAPABILITY " + IMAP_CAPABILITY,
                                   "{tag} OK Pre-login capabilities listed."], tag=tag))

    def cmd_ID(self, tag, line, arg):
        self.respond(*self.answer("ID", line, ['* ID ("name" "fakestore")',
                                               "{tag} OK ID completed."], tag=tag, arg=arg))

    def cmd_NOOP(self, tag, line, arg):
        self.respond(*self.answer("NOOP", line, "{tag} OK NOOP completed.", tag=tag))

    def cmd_STARTTLS(self, tag, line, arg):
        self.respond(*self.answer("STARTTLS", line, "{tag} NO TLS is not available here.",
                                  tag=tag))

    def cmd_SELECT(self, tag, line, arg):
        if not self.logged_in:
            self.respond(*self.answer("SELECT", line, "{tag} BAD Not logged in.", tag=tag))
            return
        self.respond(*self.answer("SELECT", line,
                                  ["* FLAGS (\\Seen)", "* 0 EXISTS", "* 0 RECENT",
                                   "* OK [UIDVALIDITY 1] UIDs valid",
                                   "{tag} OK [READ-WRITE] Select completed."], tag=tag))

    def cmd_LOGOUT(self, tag, line, arg):
        self.respond(*self.answer("LOGOUT", line, ["* BYE Logging out",
                                                   "{tag} OK Logout completed."], tag=tag))
        self.close()
        raise _Closed()

    def login(self, command, tag, line, logged, user, password):
        ok = user is not None and self.store.password_ok(user, password)
        default = ("{tag} OK [CAPABILITY IMAP4rev1 ID IDLE] Logged in" if ok else
                   "{tag} NO [AUTHENTICATIONFAILED] Authentication failed.")
        lines, rule, entry = self.answer(command, line, default, logged=logged, tag=tag)
        accepted = lines[-1].upper().startswith(tag.upper() + " OK")
        self.store._login(self.number, user, accepted)
        self.logged_in = self.logged_in or accepted
        self.respond(lines, rule, entry)

    def cmd_LOGIN(self, tag, line, arg):
        args = _imap_args(arg)
        user, password = (args + [None, None])[:2]
        logged = "%s LOGIN %s ***" % (tag, _imap_quote(user or ""))
        self.login("LOGIN", tag, line, logged, user, password)

    def cmd_AUTHENTICATE(self, tag, line, arg):
        parts = arg.split(" ")
        logged = "%s AUTHENTICATE %s%s" % (tag, parts[0], " ***" if len(parts) > 1 else "")
        if parts[0].upper() != "PLAIN":
            self.respond(*self.answer("AUTHENTICATE", line,
                                      "{tag} NO Unsupported authentication mechanism.",
                                      logged=logged, tag=tag))
            return
        if len(parts) > 1:
            response = parts[1]
        else:
            self.send_lines(["+ "])
            response = self.read_line().decode("utf-8", "surrogateescape")
        if response == "*":
            self.respond(*self.answer("AUTHENTICATE", line, "{tag} BAD Authentication aborted.",
                                      logged=logged, tag=tag))
            return
        creds = _sasl_plain(response) or (None, None)
        self.login("AUTHENTICATE", tag, line, logged, *creds)


# ---------------------------------------------------------------------------
# POP3.

class _Pop3Connection(_Connection):
    def serve(self):
        self.logged_in = False
        self.user = None
        self.greet("+OK Fake POP3 store %s ready." % self.store.name)
        while True:
            line = self.read_line().decode("utf-8", "surrogateescape")
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            handler = getattr(self, "cmd_" + verb, None)
            if handler is not None:
                handler(line, arg)
            elif self.logged_in:
                self.respond(*self.answer(verb, line, "+OK", arg=arg))
            else:
                self.respond(*self.answer(verb, line, "-ERR Unknown command.", arg=arg))

    def cmd_CAPA(self, line, arg):
        self.respond(*self.answer("CAPA", line, ["+OK", "TOP", "UIDL", "RESP-CODES",
                                                 "PIPELINING", "AUTH-RESP-CODE", "USER",
                                                 "SASL PLAIN", "."]))

    def cmd_NOOP(self, line, arg):
        self.respond(*self.answer("NOOP", line, "+OK"))

    def cmd_STLS(self, line, arg):
        self.respond(*self.answer("STLS", line, "-ERR TLS is not available here."))

    def cmd_XCLIENT(self, line, arg):
        self.respond(*self.answer("XCLIENT", line, "+OK", arg=arg))

    def cmd_STAT(self, line, arg):
        self.respond(*self.answer("STAT", line, "+OK 0 0" if self.logged_in else
                                  "-ERR Unknown command."))

    def cmd_LIST(self, line, arg):
        self.respond(*self.answer("LIST", line, ["+OK 0 messages:", "."] if self.logged_in
                                  else "-ERR Unknown command."))

    def cmd_UIDL(self, line, arg):
        self.respond(*self.answer("UIDL", line, ["+OK", "."] if self.logged_in
                                  else "-ERR Unknown command."))

    def cmd_QUIT(self, line, arg):
        self.respond(*self.answer("QUIT", line, "+OK Logging out."))
        self.close()
        raise _Closed()

    def cmd_USER(self, line, arg):
        lines, rule, entry = self.answer("USER", line, "+OK", arg=arg)
        if lines[-1].startswith("+OK"):
            self.user = arg
        self.respond(lines, rule, entry)

    def login(self, command, line, logged, user, password):
        ok = user is not None and self.store.password_ok(user, password)
        default = "+OK Logged in." if ok else "-ERR [AUTH] Authentication failed."
        lines, rule, entry = self.answer(command, line, default, logged=logged)
        accepted = lines[-1].startswith("+OK")
        self.store._login(self.number, user, accepted)
        self.logged_in = self.logged_in or accepted
        self.respond(lines, rule, entry)

    def cmd_PASS(self, line, arg):
        if self.user is None:
            self.respond(*self.answer("PASS", line, "-ERR No username given.",
                                      logged="PASS ***"))
            return
        self.login("PASS", line, "PASS ***", self.user, arg)

    def cmd_AUTH(self, line, arg):
        parts = arg.split(" ")
        logged = "AUTH %s%s" % (parts[0], " ***" if len(parts) > 1 else "")
        if parts[0].upper() != "PLAIN":
            self.respond(*self.answer("AUTH", line, "-ERR Unsupported authentication mechanism.",
                                      logged=logged))
            return
        if len(parts) > 1:
            response = parts[1]
        else:
            self.send_lines(["+ "])
            response = self.read_line().decode("utf-8", "surrogateescape")
        creds = _sasl_plain(response) or (None, None)
        self.login("AUTH", line, logged, *creds)


_PROTOCOLS = {"lmtp": _LmtpConnection, "imap": _ImapConnection, "pop3": _Pop3Connection}


# ---------------------------------------------------------------------------
# The store.

class FakeStore:
    """A fake store serving one protocol on host:port from threads of this process.

    users: LMTP: the recipients it knows (addresses or local parts; None: everyone);
           IMAP/POP3: {user: password} (None: any user, any password).
    """

    def __init__(self, protocol, port=0, host=HOST, users=None, name="fake",
                 hostname="fakestore.test", echo=False):
        if protocol not in _PROTOCOLS:
            raise ValueError("protocol must be one of %s" % ", ".join(sorted(_PROTOCOLS)))
        self.protocol = protocol
        self.host = host
        self.port = port
        self.users = users
        self.name = name
        self.hostname = hostname
        self.echo = echo
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener = None
        self._threads = []
        self._handlers = []
        self._rules = []
        self._exchanges = []
        self._stored = []
        self._violations = []
        self._logins = []
        self._errors = []
        self._connections = 0
        self._ids = 0

    # -- life -----------------------------------------------------------------

    def start(self):
        """Listen and serve in a background thread; returns self (port is then known)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(64)
        self.port = s.getsockname()[1]
        self._listener = s
        t = threading.Thread(target=self._accept_loop, name="fakestore-%s-accept" % self.name,
                             daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self, timeout=5.0):
        """Close the listener and every connection; wait (bounded) for the threads."""
        self._stopping.set()
        if self._listener is not None:
            try:
                self._listener.close()
            except OSError:
                pass
        with self._lock:
            handlers = list(self._handlers)
        for h in handlers:
            h.close()
        deadline = time.monotonic() + timeout
        for t in list(self._threads):
            t.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self):
        return self.start() if self._listener is None else self

    def __exit__(self, *exc):
        self.stop()

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], _POLL)
                if not ready:
                    continue
                sock, _ = self._listener.accept()
            except (OSError, ValueError):
                if self._stopping.is_set():
                    return
                continue
            with self._lock:
                self._connections += 1
                number = self._connections
                handler = _PROTOCOLS[self.protocol](self, sock, number)
                self._handlers.append(handler)
            t = threading.Thread(target=handler.run, daemon=True,
                                 name="fakestore-%s-%d" % (self.name, number))
            with self._lock:
                self._threads.append(t)
            t.start()

    # -- scripting ------------------------------------------------------------

    def on(self, command, reply=None, **options):
        """Add a rule (see the module's docstring); returns it (rule.used counts uses)."""
        rule = Rule(command, reply, **options)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self):
        """Drop every rule: from now on the store behaves correctly."""
        with self._lock:
            self._rules = []

    def _take_rule(self, command, text, connection):
        with self._lock:
            for rule in self._rules:
                if rule.fits(command, text, connection):
                    rule.used += 1
                    return rule
        return None

    def knows(self, rcpt):
        if self.users is None:
            return True
        local = rcpt.split("@", 1)[0]
        return rcpt.lower() in self.users or local.lower() in self.users

    def password_ok(self, user, password):
        if self.users is None:
            return True
        return self.users.get(user) == password

    # -- records --------------------------------------------------------------

    def _record(self, connection, command, line):
        entry = Exchange(connection, command, line)
        with self._lock:
            self._exchanges.append(entry)
        return entry

    def _echo(self, entry):
        if self.echo:
            sys.stderr.write("fakestore %s: %r\n" % (self.name, entry))

    def _add_stored(self, stored):
        with self._lock:
            self._stored.append(stored)

    def _violation(self, text):
        with self._lock:
            self._violations.append(text)

    def _login(self, connection, user, accepted):
        with self._lock:
            self._logins.append((connection, user, accepted))

    def _error(self, text):
        with self._lock:
            self._errors.append(text)
        sys.stderr.write("fakestore %s: %s\n" % (self.name, text))

    def _next_id(self):
        with self._lock:
            self._ids += 1
            return "fake%06d" % self._ids

    @property
    def connections(self):
        """How many connections were accepted so far."""
        with self._lock:
            return self._connections

    def open_connections(self):
        """The numbers of the connections still being served."""
        with self._lock:
            return [h.number for h in self._handlers if not h.finished]

    def exchanges(self, command=None, connection=None):
        """What the store received and answered, in order (optionally one command's or
        one connection's)."""
        with self._lock:
            found = list(self._exchanges)
        return [e for e in found if (command is None or e.command == command.upper())
                and (connection is None or e.connection == connection)]

    def commands(self, connection=None):
        """The verbs received (and "GREETING"), in order."""
        return [e.command for e in self.exchanges(connection=connection)]

    @property
    def stored(self):
        with self._lock:
            return list(self._stored)

    def delivered(self, rcpt=None):
        """Message-IDs stored (answered 250 after DATA), for one recipient or for all."""
        out = []
        for s in self.stored:
            with self._lock:
                rcpts = list(s.recipients)
            out.extend(s.message_id for r in rcpts if rcpt is None or r.lower() == rcpt.lower())
        return out

    def open_transactions(self):
        """LMTP: the connections still open whose transaction is open (MAIL accepted, and
        neither a message completed nor RSET since)."""
        with self._lock:
            return [h.number for h in self._handlers
                    if not h.finished and getattr(h, "mail_from", None) is not None]

    @property
    def violations(self):
        with self._lock:
            return list(self._violations)

    @property
    def logins(self):
        with self._lock:
            return list(self._logins)

    @property
    def errors(self):
        """Exceptions inside the fake itself (a test should expect none)."""
        with self._lock:
            return list(self._errors)

    def describe(self, last=80):
        """What it saw (the last `last` exchanges and stored messages), for failure
        messages."""
        lines = ["--- fake %s store %s on port %d: %d connection(s) ---"
                 % (self.protocol, self.name, self.port, self.connections)]
        lines += [repr(e) for e in self.exchanges()[-last:]]
        lines += [repr(s) for s in self.stored[-last:]]
        lines += ["violation: " + v for v in self.violations]
        lines += ["error: " + e for e in self.errors]
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# The store in a process of its own, for faults that need one: SIGKILL, SIGSTOP.

class _ReportingStore(FakeStore):
    """A FakeStore that writes "seen CONNECTION COMMAND" to stdout as each command (and
    each greeting) arrives, before it is answered, so that a parent knows the moment."""

    def _record(self, connection, command, line):
        entry = FakeStore._record(self, connection, command, line)
        with self._lock:
            sys.stdout.write("seen %d %s\n" % (connection, command))
            sys.stdout.flush()
        return entry


def _serve_spec(spec):
    store = _ReportingStore(spec["protocol"], port=spec.get("port", 0),
                            host=spec.get("host", HOST), users=spec.get("users"),
                            name=spec.get("name", "fake"))
    for rule in spec.get("rules", []):
        rule = dict(rule)
        store.on(rule.pop("command"), rule.pop("reply", None), **rule)
    store.start()
    sys.stdout.write("port %d\n" % store.port)
    sys.stdout.flush()
    # Until the parent closes our stdin (or kills us).
    sys.stdin.read()
    store.stop()


class FakeStoreProcess:
    """The fake store run as a child process, so that a test can SIGKILL or SIGSTOP it the
    way a real store's process dies or hangs, at a point the rules make precise (e.g. a
    rule that hangs at LOGIN, then a SIGKILL once seen("LOGIN") says it arrived).

        store = FakeStoreProcess("imap", users={"amy": "pw"},
                                 rules=[{"command": "LOGIN", "hang": True}]).start()
        store.wait_seen("LOGIN"); store.signal(signal.SIGKILL)

    users as for FakeStore (a set for LMTP is given as a list); rules: on()'s arguments as
    dicts with a "command" key.  Stopped by PID.
    """

    def __init__(self, protocol, users=None, rules=(), host=HOST, port=0, name="fake"):
        import json
        if isinstance(users, (set, frozenset)):
            users = sorted(users)
        self.spec = json.dumps({"protocol": protocol, "users": users, "rules": list(rules),
                                "host": host, "port": port, "name": name})
        self.host = host
        self.port = port
        self.process = None
        self._seen = []
        self._cond = threading.Condition()

    def start(self, timeout=10.0):
        import subprocess
        self._seen = []
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve", self.spec],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        ready = threading.Event()

        def reader(out):
            for raw in out:
                words = raw.decode("utf-8", "replace").split()
                if words[:1] == ["port"]:
                    self.port = int(words[1])
                    ready.set()
                elif words[:1] == ["seen"]:
                    with self._cond:
                        self._seen.append((int(words[1]), words[2]))
                        self._cond.notify_all()
            ready.set()

        threading.Thread(target=reader, args=(self.process.stdout,), daemon=True).start()
        if not ready.wait(timeout) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError("the fake store process did not start")
        return self

    @property
    def pid(self):
        return self.process.pid

    def seen(self, command=None):
        """(connection, command) pairs received so far (optionally one command's)."""
        with self._cond:
            return [x for x in self._seen if command is None or x[1] == command.upper()]

    def wait_seen(self, command, count=1, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while len([x for x in self._seen if x[1] == command.upper()]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("the fake store did not receive %s x%d within %.1fs"
                                         % (command, count, timeout))
                self._cond.wait(left)

    def signal(self, signum):
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def running(self):
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout=5.0):
        """SIGCONT (in case it is stopped), then SIGKILL, by PID; wait for it."""
        if self.process is None:
            return
        import signal as _signal
        if self.process.poll() is None:
            os.kill(self.process.pid, _signal.SIGCONT)
            os.kill(self.process.pid, _signal.SIGKILL)
        self.process.wait(timeout)
        for f in (self.process.stdin, self.process.stdout):
            try:
                f.close()
            except OSError:
                pass


def main(argv):
    """python3 fakestore.py lmtp|imap|pop3 [PORT]: a correct fake store, echoing what it
    sees, until Ctrl-C (for trying a client by hand).  (--serve JSON: FakeStoreProcess's
    child.)"""
    if len(argv) > 2 and argv[1] == "--serve":
        import json
        _serve_spec(json.loads(argv[2]))
        return
    store = FakeStore(argv[1], port=int(argv[2]) if len(argv) > 2 else 0, echo=True).start()
    sys.stderr.write("fake %s store on %s:%d\n" % (store.protocol, store.host, store.port))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        store.stop()


if __name__ == "__main__":
    main(sys.argv)
