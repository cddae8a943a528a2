"""The LMTP router, end to end with real servers: Postfix delivers over LMTP to Switchyard,
which delivers each recipient to its own Dovecot store over LMTP. Per-recipient results
(delivered on both stores, unknown, on hold), mail read back through Switchyard's IMAP,
nothing lost or doubled while a store is down, and byte-exact framing (dot-stuffing, bare
LF/CR, a message larger than the in-memory spool, a client leaving in the middle of DATA).
"""

import email
import imaplib
import os
import re
import shutil
import smtplib
import socket
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Dovecot, Switchyard, make_sqlite_map, toml_string  # noqa: E402
from postfix import Postfix  # noqa: E402

HOST = "127.0.0.1"
LMTP_CONF = "auth_username_format = %n\n"


def message(mid, to, body="hello\r\n", extra=""):
    return ("From: sender@example.test\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@test>\r\n%s"
            "\r\n%s" % (to, mid, mid, extra, body)).encode()


class LmtpRouterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-lmtp-")
        os.chmod(cls.tmp, 0o755)
        users = {"amy": "amy-pw", "bea": "bea-pw", "cat": "cat-pw", "s0042": "s0042-pw"}
        cls.store1 = Dovecot("lm1", os.path.join(cls.tmp, "s1"), users=users, extra_conf=LMTP_CONF)
        cls.store2 = Dovecot("lm2", os.path.join(cls.tmp, "s2"), users=users, extra_conf=LMTP_CONF)
        cls.map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"), [
            ("amy@example.test", "store1"), ("bea@example.test", "store2"),
            ("cat@example.test", "store2"), ("moving@example.test", "hold"),
            ("alias@example.test", "store1", None, "s0042")])
        cls.lmtp_port, cls.imap_port = harness.free_ports(2)
        config = ("workers = 1\nmap_dir = %s\n[log]\ntarget = \"stderr\"\nlevel = \"info\"\n\n"
                  "[[listen]]\nprotocol = \"lmtp\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
                  "[username]\nstrip_domain = false\n\n"
                  "[lookup]\ncache_size = 0\n\n"
                  "[lmtp]\nspool_memory = 65536\nmax_message_size = 20000000\n"
                  "store_timeout = \"10s\"\n\n"
                  "[backend.store1]\nhost = \"127.0.0.1\"\nimap = %d\nlmtp = %d\n"
                  "connect_timeout = \"1s\"\ndown_time = \"0s\"\n\n"
                  "[backend.store2]\nhost = \"127.0.0.1\"\nimap = %d\nlmtp = %d\n"
                  "connect_timeout = \"1s\"\ndown_time = \"0s\"\n"
                  % (toml_string(harness.map_dir()), cls.lmtp_port, cls.imap_port,
                     toml_string(cls.map_path), cls.store1.imap_port, cls.store1.lmtp_port,
                     cls.store2.imap_port, cls.store2.lmtp_port))
        cls.proxy = Switchyard(None, os.path.join(cls.tmp, "proxy"), config)
        cls.postfix = Postfix(os.path.join(cls.tmp, "postfix"), lmtp_port=cls.lmtp_port,
                              domains=("example.test",))

    @classmethod
    def tearDownClass(cls):
        for s in ("postfix", "proxy", "store1", "store2"):
            if getattr(cls, s, None):
                getattr(cls, s).stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def message_ids(self, store, user):
        return self.message_ids_of(store.mailbox_files(user))

    @staticmethod
    def message_ids_of(paths):
        ids = []
        for path in paths:
            with open(path, "rb") as f:
                m = re.search(rb"^Message-ID: <([^>@]+)@test>", f.read(), re.M | re.I)
                ids.append(m.group(1).decode() if m else None)
        return ids

    def imap_subjects(self, user, password):
        conn = imaplib.IMAP4(HOST, self.imap_port, timeout=20)
        try:
            conn.login(user, password)
            typ, data = conn.select("INBOX", readonly=True)
            if int(data[0]) == 0:
                return []
            typ, data = conn.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            return [email.message_from_bytes(p[1])["Subject"] for p in data if isinstance(p, tuple)]
        finally:
            conn.logout()

    def lmtp(self):
        c = smtplib.LMTP(HOST, self.lmtp_port, timeout=30)
        self.addCleanup(c.close)
        c.ehlo_or_helo_if_needed = lambda: None
        code, _ = c.docmd("LHLO", "client.test")
        self.assertEqual(code, 250)
        return c

    def test_postfix_message_to_both_stores_unknown_and_held(self):
        start = len(self.postfix.log_text())
        rcpts = ["amy@example.test", "bea@example.test", "ghost@example.test",
                 "moving@example.test"]
        result = self.postfix.send("", rcpts, message("multi", ", ".join(rcpts)))
        self.assertTrue(result.ok, result)
        self.postfix.wait_status("amy@example.test", "sent", start=start)
        self.postfix.wait_status("bea@example.test", "sent", start=start)
        self.postfix.wait_status("ghost@example.test", "bounced", dsn=r"5\.1\.1", start=start)
        self.postfix.wait_status("moving@example.test", "deferred", dsn=r"4\.2\.1", start=start)
        self.assertIn("multi", self.message_ids(self.store1, "amy"))
        self.assertIn("multi", self.message_ids(self.store2, "bea"))
        self.assertNotIn("multi", self.message_ids(self.store1, "bea"))
        # Read back through Switchyard's IMAP: the same map sends amy and bea to their mail.
        self.assertIn("multi", self.imap_subjects("amy@example.test", "amy-pw"))
        self.assertIn("multi", self.imap_subjects("bea@example.test", "bea-pw"))

    def test_a_user_on_hold_is_turned_away_everywhere(self):
        c = self.lmtp()
        c.docmd("MAIL", "FROM:<sender@example.test>")
        code, text = c.docmd("RCPT", "TO:<moving@example.test>")
        self.assertEqual((code, text[:5]), (451, b"4.2.1"))
        conn = imaplib.IMAP4(HOST, self.imap_port, timeout=20)
        try:
            with self.assertRaisesRegex(imaplib.IMAP4.error, r"UNAVAILABLE"):
                conn.login("moving@example.test", "x")
        finally:
            conn.shutdown()

    def test_replies_come_per_recipient_in_rcpt_order_with_the_stores_verdict(self):
        c = self.lmtp()
        c.docmd("MAIL", "FROM:<sender@example.test>")
        self.assertEqual(c.docmd("RCPT", "TO:<bea@example.test>")[0], 250)
        self.assertEqual(c.docmd("RCPT", "TO:<nobody@example.test>")[0], 550)
        self.assertEqual(c.docmd("RCPT", "TO:<amy@example.test>")[0], 250)
        self.assertEqual(c.docmd("RCPT", "TO:<alias@example.test>")[0], 250)  # renamed s0042
        self.assertEqual(c.docmd("DATA")[0], 354)
        body = message("order", "x").replace(b"\r\n.", b"\r\n..")
        c.send(body + b"\r\n.\r\n")
        replies = [c.getreply() for _ in range(3)]
        self.assertTrue(all(code == 250 for code, _ in replies), replies)
        self.assertIn(b"bea@example.test", replies[0][1])
        self.assertIn(b"amy@example.test", replies[1][1])
        self.assertIn(b"s0042@example.test", replies[2][1], "the store saw the renamed user")
        self.assertIn("order", self.message_ids(self.store1, "s0042"))

    def test_framing_is_byte_exact(self):
        big = ("line %06d\r\n" % i for i in range(12000))  # ~144 kB: over the memory spool
        body = ("..starts with a dot\r\n.\r\n. lone dot lines\r\nbare\nLF and bare\rCR\r\n"
                + "".join(big) + "last line without CRLF")
        raw = message("exact", "cat@example.test", body=body)
        c = self.lmtp()
        c.docmd("MAIL", "FROM:<sender@example.test> BODY=8BITMIME")
        c.docmd("RCPT", "TO:<cat@example.test>")
        self.assertEqual(c.docmd("DATA")[0], 354)
        stuffed = re.sub(rb"(^|\r\n)\.", rb"\1..", raw)
        c.send(stuffed + b"\r\n.\r\n")
        code, text = c.getreply()
        self.assertEqual(code, 250, text)
        files = [p for p in self.store2.mailbox_files("cat")
                 if "exact" in self.message_ids_of([p])]
        self.assertEqual(len(files), 1)
        with open(files[0], "rb") as f:
            stored = f.read()
        # Dovecot stores LF line ends and adds its headers in front: compare the body.
        want = raw.split(b"\r\n\r\n", 1)[1] + b"\r\n"
        got = stored.split(b"\n\n", 1)[1]
        self.assertEqual(got, want.replace(b"\r\n", b"\n"))

    def test_store_connections_are_reused_across_messages(self):
        def connects():
            return len(re.findall(r"lmtp\(\d+\): Info: Connect from", self.store1.log_text()))
        c = self.lmtp()
        before = None
        for i in range(4):
            c.docmd("MAIL", "FROM:<sender@example.test>")
            c.docmd("RCPT", "TO:<amy@example.test>")
            self.assertEqual(c.docmd("DATA")[0], 354)
            c.send(message("reuse-%d" % i, "amy@example.test") + b"\r\n.\r\n")
            self.assertEqual(c.getreply()[0], 250)
            if before is None:
                before = connects()
        self.assertGreaterEqual(before, 1, "Dovecot logs its LMTP connections")
        self.assertEqual(connects(), before, "messages 2-4 went over the first connection")

    def test_replies_to_pipelined_commands_come_in_one_write(self):
        # RFC 2920: the replies to MAIL, every RCPT and DATA sent in one packet may be
        # sent back together; the router does, so the client wakes once, not four times.
        s = socket.create_connection((HOST, self.lmtp_port), timeout=10)
        self.addCleanup(s.close)
        greeting = s.recv(4096)
        self.assertTrue(greeting.startswith(b"220"), greeting)
        s.sendall(b"LHLO x\r\n")
        lhlo = b""
        while not lhlo.endswith(b"\r\n") or b"250 " not in lhlo:
            lhlo += s.recv(4096)
        s.sendall(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<amy@example.test>\r\n"
                  b"RCPT TO:<ghost@example.test>\r\nRCPT TO:<bea@example.test>\r\nDATA\r\n")
        first = s.recv(4096)  # what arrived first: everything, or the MAIL reply alone
        lines = first.split(b"\r\n")[:-1]
        self.assertEqual([l[:3] for l in lines], [b"250", b"250", b"550", b"250", b"354"], first)
        s.sendall(message("pipelined", "amy@example.test, bea@example.test") + b"\r\n.\r\n")
        finals = b""
        while finals.count(b"\r\n") < 2:
            finals += s.recv(4096)
        self.assertEqual([l[:3] for l in finals.split(b"\r\n")[:-1]], [b"250", b"250"], finals)
        s.sendall(b"QUIT\r\n")
        self.assertTrue(s.recv(4096).startswith(b"221"))

    def test_client_leaving_during_data_delivers_nothing(self):
        before = len(self.store1.mailbox_files("amy"))
        s = socket.create_connection((HOST, self.lmtp_port), timeout=10)
        f = s.makefile("rwb")
        f.readline()
        f.write(b"LHLO x\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<amy@example.test>\r\nDATA\r\n")
        f.flush()
        lines = [f.readline() for _ in range(8)]  # 5 lines of LHLO, MAIL, RCPT, DATA
        self.assertTrue(lines[-1].startswith(b"354"), lines)
        f.write(message("abandoned", "amy@example.test"))
        f.flush()
        f.close()  # (the file object holds the socket open too)
        s.close()
        harness.wait_for_log(self.proxy.log_path, r"left during DATA; nothing delivered", 10)
        self.assertEqual(len(self.store1.mailbox_files("amy")), before)
        self.assertNotIn("abandoned", self.message_ids(self.store1, "amy"))

    def test_nothing_lost_while_a_store_is_down(self):
        n = 200
        self.store2.stop()
        try:
            start = len(self.postfix.log_text())
            for i in range(n):
                r = self.postfix.send("", ["bea@example.test", "amy@example.test"],
                                      message("loss-%03d" % i, "bea, amy"))
                self.assertTrue(r.ok, r)
            # amy's store is up: her copies arrive; bea's are deferred with 451 4.4.1.
            harness.wait_until(lambda: sum(1 for m in self.message_ids(self.store1, "amy")
                                           if m and m.startswith("loss-")) == n, 120,
                               "amy's %d messages" % n)
            self.postfix.wait_status("bea@example.test", "deferred", dsn=r"4\.4\.1", start=start)
        finally:
            self.store2.start()
        self.postfix.flush()
        self.postfix.wait_queue_empty(180)
        ids = [m for m in self.message_ids(self.store2, "bea") if m and m.startswith("loss-")]
        self.assertEqual(len(ids), n, "every message delivered")
        self.assertEqual(len(set(ids)), n, "and none twice")
        amy = [m for m in self.message_ids(self.store1, "amy") if m and m.startswith("loss-")]
        self.assertEqual(sorted(amy), sorted(set(amy)), "amy got no duplicates")


if __name__ == "__main__":
    unittest.main()
