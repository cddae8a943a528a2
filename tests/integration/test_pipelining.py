"""Pipelining through the relay, as mbsync and mpop do it: after login, many commands each in
its own write while the answers stream back, over every mix of plain and TLS on the client
and store legs (imap, imaps, IMAP STARTTLS, pop3s, POP3 STLS; stores plain and implicit
TLS); and a 10 MB FETCH over imaps while the client keeps sending NOOPs. Every answer must
arrive, byte for byte. The store is a real Dovecot.
"""

import base64
import os
import random
import re
import select
import shutil
import socket
import ssl
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Dovecot, LineClient, Switchyard, make_ca, make_cert, make_sqlite_map, toml_string  # noqa: E402

HOST = "127.0.0.1"
COMMANDS = 100
MESSAGES = 30
BIG_SIZE = 10 * 1024 * 1024
NOOPS = 40
BURST = 10  # commands sent back to back (each its own write) before reading what came
NOOP_BURST = 4
TIMEOUT = 20.0  # per answer: a stalled relay fails the test well within it


def small_message(k, rng):
    lines = ["From: sender%d@example.invalid" % k, "Subject: pipelined message %d" % k, ""]
    for n in range(20 + 17 * k):  # sizes from about 1 KB to 30 KB
        lines.append("%d.%d %s" % (k, n, "".join(rng.choice("abcdefghij ") for _ in range(60))))
    return ("\r\n".join(lines) + "\r\n").encode()


def big_message():
    raw = random.Random(7).randbytes(BIG_SIZE * 3 // 4 - 300)
    body = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    return b"From: big@example.invalid\r\nSubject: ten megabytes\r\n\r\n" + body


class PipeliningTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-pipe-")
        os.chmod(cls.tmp, 0o755)
        cls.ca = make_ca(os.path.join(cls.tmp, "ca"))
        certs = os.path.join(cls.tmp, "certs")
        cls.proxy_cert = make_cert(certs, "proxy", cls.ca)
        cls.store_cert = make_cert(certs, "store", cls.ca)
        cls.store = Dovecot("pipestore", os.path.join(cls.tmp, "store"),
                            users={"pipe": "pipe-pw", "big": "big-pw"}, tls=cls.store_cert)
        rng = random.Random(3)
        cls.messages = [small_message(k, rng) for k in range(MESSAGES)]
        for m in cls.messages:
            cls.store.add_message("pipe", m)
        cls.big = big_message()
        cls.store.add_message("big", cls.big)
        # The same mailboxes reached over a plain and over a TLS store leg.
        cls.map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"), [
            ("pipe", "plainstore"), ("pipe-tls", "tlsstore", None, "pipe"),
            ("big", "plainstore"), ("big-tls", "tlsstore", None, "big")])
        cls.imap, cls.imaps, cls.pop3, cls.pop3s = harness.free_ports(4)
        cls.proxy = Switchyard(None, os.path.join(cls.tmp, "proxy"), cls.config())
        cls.ctx = ssl.create_default_context(cafile=cls.ca[0])

    @classmethod
    def config(cls, listeners=None, limits=""):
        listeners = listeners or (("imap", cls.imap), ("imaps", cls.imaps),
                                  ("pop3", cls.pop3), ("pop3s", cls.pop3s))
        listen = "".join('[[listen]]\nprotocol = "%s"\naddress = "127.0.0.1:%d"\n\n' % (p, port)
                         for p, port in listeners)
        return (
            "workers = 1\nmap_dir = %s\n[log]\ntarget = \"stderr\"\nlevel = \"info\"\n\n"
            "[limits]\n%s\n"
            "[tls]\ncert = %s\nkey = %s\nca = %s\n\n%s"
            "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
            "[backend.plainstore]\nhost = \"127.0.0.1\"\nimap = %d\npop3 = %d\n\n"
            "[backend.tlsstore]\nhost = \"localhost\"\nimap = %d\npop3 = %d\ntls = \"implicit\"\n"
            % (toml_string(harness.map_dir()), limits, toml_string(cls.proxy_cert[0]),
               toml_string(cls.proxy_cert[1]), toml_string(cls.ca[0]), listen,
               toml_string(cls.map_path), cls.store.imap_port, cls.store.pop3_port,
               cls.store.imaps_port, cls.store.pop3s_port))

    @classmethod
    def tearDownClass(cls):
        for s in (cls.proxy, cls.store):
            s.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def tearDown(self):
        self.assertNotIn("relay stalled", self.proxy.log_text())

    # -- clients --------------------------------------------------------------

    def connect(self, port, tls):
        c = LineClient(HOST, port, timeout=TIMEOUT)
        self.addCleanup(c.close)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one segment a write
        if tls:
            c.sock = self.ctx.wrap_socket(c.sock, server_hostname="localhost")
        return c

    def starttls(self, c):
        c.sock = self.ctx.wrap_socket(c.sock, server_hostname="localhost")

    @staticmethod
    def poll(c):
        """Take in whatever has arrived, without waiting."""
        while True:
            pending = isinstance(c.sock, ssl.SSLSocket) and c.sock.pending()
            if not pending and not select.select([c.sock], [], [], 0)[0]:
                return
            c.sock.setblocking(False)
            try:
                chunk = c.sock.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return
            finally:
                c.sock.settimeout(TIMEOUT)
            if not chunk:
                raise EOFError("connection closed")
            c.buf += chunk

    def imap_login(self, kind, user):
        port = self.imaps if kind == "imaps" else self.imap
        c = self.connect(port, kind == "imaps")
        self.assertTrue(c.readline().startswith(b"* OK"))
        if kind == "starttls":
            self.assertTrue(c.command("s", "STARTTLS")[1].startswith(b"s OK"))
            self.starttls(c)
        password = "big-pw" if user.startswith("big") else "pipe-pw"
        self.assertTrue(c.command("a", "LOGIN %s %s" % (user, password))[1].startswith(b"a OK"))
        self.assertTrue(c.command("b", "EXAMINE INBOX")[1].startswith(b"b OK"))
        return c

    def pop3_login(self, kind, user):
        port = self.pop3s if kind == "pop3s" else self.pop3
        c = self.connect(port, kind == "pop3s")
        self.assertTrue(c.readline().startswith(b"+OK"))
        if kind == "stls":
            c.send(b"STLS\r\n")
            self.assertTrue(c.readline().startswith(b"+OK"))
            self.starttls(c)
        c.send(b"USER %s\r\n" % user.encode())
        self.assertTrue(c.readline().startswith(b"+OK"))
        c.send(b"PASS pipe-pw\r\n")
        self.assertTrue(c.readline().startswith(b"+OK"))
        return c

    # -- pipelining -------------------------------------------------------------

    def imap_pipeline(self, kind, user):
        c = self.imap_login(kind, user)
        for i in range(COMMANDS):
            c.send(b"t%d FETCH %d (BODY.PEEK[])\r\n" % (i, i % MESSAGES + 1))
            if i % BURST == BURST - 1:
                self.poll(c)
        # Dovecot runs pipelined FETCHes in parallel: the FETCH responses may come before
        # or after other commands' tagged answers, so count them all.
        bodies, tagged, fetches = {}, set(), 0
        while len(tagged) < COMMANDS:
            resp = c.read_response(TIMEOUT)
            t = re.match(rb"t(\d+) ", resp)
            if t:
                self.assertTrue(resp.startswith(t.group(0) + b"OK"), resp[:200])
                tagged.add(int(t.group(1)))
                continue
            m = re.match(rb"\* (\d+) FETCH \(BODY\[\] \{(\d+)\}\r\n", resp)
            self.assertTrue(m, resp[:200])
            body = resp[m.end():m.end() + int(m.group(2))]
            self.assertTrue(body in self.messages, "a FETCH body differs")
            self.assertEqual(bodies.setdefault(int(m.group(1)), body), body)
            fetches += 1
        self.assertEqual(fetches, COMMANDS)
        self.assertEqual(len(bodies), MESSAGES)
        self.assertTrue(c.command("z", "LOGOUT")[1].startswith(b"z OK"))

    def pop3_pipeline(self, kind, user):
        c = self.pop3_login(kind, user)
        for i in range(COMMANDS):
            c.send(b"RETR %d\r\n" % (i % MESSAGES + 1))
            if i % BURST == BURST - 1:
                self.poll(c)
        bodies = {}
        for i in range(COMMANDS):
            status = c.readline(TIMEOUT)
            self.assertTrue(status.startswith(b"+OK"), (i, status))
            lines = []
            while True:
                line = c.readline(TIMEOUT)
                if line == b".\r\n":
                    break
                lines.append(line[1:] if line.startswith(b".") else line)
            body = b"".join(lines)
            self.assertTrue(body in self.messages, "a RETR body differs")
            self.assertEqual(bodies.setdefault(i % MESSAGES, body), body)
        self.assertEqual(len(set(bodies.values())), MESSAGES)
        c.send(b"QUIT\r\n")
        self.assertTrue(c.readline().startswith(b"+OK"))

    def test_imaps_pipelined_commands_to_a_plain_store(self):
        self.imap_pipeline("imaps", "pipe")

    def test_imaps_pipelined_commands_to_a_tls_store(self):
        self.imap_pipeline("imaps", "pipe-tls")

    def test_imap_starttls_pipelined_commands(self):
        self.imap_pipeline("starttls", "pipe")

    def test_imap_plain_client_pipelined_to_a_tls_store(self):
        self.imap_pipeline("imap", "pipe-tls")

    def test_imap_plain_both_ways_pipelined(self):
        self.imap_pipeline("imap", "pipe")

    def test_pop3s_pipelined_commands_to_a_plain_store(self):
        self.pop3_pipeline("pop3s", "pipe")

    def test_pop3s_pipelined_commands_to_a_tls_store(self):
        self.pop3_pipeline("pop3s", "pipe-tls")

    def test_pop3_stls_pipelined_commands(self):
        self.pop3_pipeline("stls", "pipe")

    # -- a big answer while the client keeps talking ------------------------------

    def big_fetch_with_noops(self, user):
        c = self.imap_login("imaps", user)
        c.send(b"f FETCH 1 (BODY.PEEK[])\r\n")
        received, sent, step = 0, 0, BIG_SIZE // (NOOPS + 2)
        deadline = time.monotonic() + 60
        # While the body streams in, NOOPs a few at a time, each in its own write.
        while sent < NOOPS and b"\r\nf " not in c.buf[-4096:]:
            self.assertLess(time.monotonic(), deadline, "the body stopped at %d bytes" % len(c.buf))
            before = len(c.buf)
            c._fill(time.monotonic() + TIMEOUT)
            received += len(c.buf) - before
            while sent < NOOPS and received >= (sent + NOOP_BURST) * step:
                for _ in range(NOOP_BURST):
                    c.send(b"n%d NOOP\r\n" % sent)
                    sent += 1
        while sent < NOOPS:
            c.send(b"n%d NOOP\r\n" % sent)
            sent += 1
        tagged = {}
        body = None
        while len(tagged) < NOOPS + 1:
            resp = c.read_response(TIMEOUT)
            m = re.match(rb"\* 1 FETCH \(BODY\[\] \{(\d+)\}\r\n", resp)
            if m:
                body = resp[m.end():m.end() + int(m.group(1))]
            t = re.match(rb"([fn]\d*) ", resp)
            if t:
                tagged[t.group(1)] = resp
        self.assertTrue(tagged[b"f"].startswith(b"f OK"), tagged[b"f"])
        for i in range(NOOPS):
            self.assertTrue(tagged[b"n%d" % i].startswith(b"n%d OK" % i))
        self.assertEqual(len(body), len(self.big))
        self.assertTrue(body == self.big, "the body differs")
        self.assertTrue(c.command("z", "LOGOUT")[1].startswith(b"z OK"))

    def test_imaps_10mb_fetch_while_sending_noops(self):
        self.big_fetch_with_noops("big")

    def test_imaps_10mb_fetch_while_sending_noops_tls_store(self):
        self.big_fetch_with_noops("big-tls")

    # -- a stalled relay is visible -------------------------------------------------

    def test_client_that_stops_reading_is_logged_as_a_stall(self):
        port, = harness.free_ports(1)
        p = Switchyard(None, os.path.join(self.tmp, "stall"),
                       self.config([("imaps", port)], 'idle_timeout = "1s"\n'))
        self.addCleanup(p.stop)
        c = LineClient(HOST, port, timeout=TIMEOUT)
        self.addCleanup(c.close)
        c.sock = self.ctx.wrap_socket(c.sock, server_hostname="localhost")
        self.assertTrue(c.readline().startswith(b"* OK"))
        self.assertTrue(c.command("a", "LOGIN big big-pw")[1].startswith(b"a OK"))
        self.assertTrue(c.command("b", "EXAMINE INBOX")[1].startswith(b"b OK"))
        c.send(b"f FETCH 1 (BODY.PEEK[])\r\n")  # and read none of it
        m = harness.wait_for_log(p.log_path, r"relay stalled: client->store pending=0 moved=\d+, "
                                             r"store->client pending=(\d+) moved=(\d+)", 15)
        self.assertGreater(int(m.group(1)), 0)
        self.assertLess(int(m.group(2)), BIG_SIZE)
        harness.wait_for_log(p.log_path, r'user="big" phase=relay reason=stalled', 10)


if __name__ == "__main__":
    unittest.main()
