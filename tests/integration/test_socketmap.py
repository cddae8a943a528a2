"""The Postfix socketmap service: Postfix asks Switchyard's maps over netstrings.
postmap -q answers for the transport, mailbox and backend tables (found, not found, hold,
map failure), and a real Postfix routes mail straight to the right Dovecot store's LMTP
by the transport table, with no LMTP hop through Switchyard.
"""

import os
import shutil
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Dovecot, Switchyard, make_sqlite_map, toml_string  # noqa: E402
from postfix import Postfix  # noqa: E402


def message(subject, to):
    return ("From: sender@example.test\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@test>\r\n"
            "\r\nbody of %s\r\n" % (to, subject, subject, subject)).encode()


class SocketmapTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-socketmap-")
        os.chmod(cls.tmp, 0o755)
        lmtp_conf = "auth_username_format = %n\n"
        cls.store1 = Dovecot("sm1", os.path.join(cls.tmp, "s1"), users={"amy": "pw"},
                             extra_conf=lmtp_conf)
        cls.store2 = Dovecot("sm2", os.path.join(cls.tmp, "s2"), users={"bea": "pw"},
                             extra_conf=lmtp_conf)
        cls.map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"), [
            ("amy@example.test", "store1"), ("bea@example.test", "store2"),
            ("moving@example.test", "hold"),
            ("direct@example.test", "127.0.0.1:%d" % cls.store2.lmtp_port)])
        cls.sock = os.path.join(cls.tmp, "socketmap")
        config = ("workers = 1\nmap_dir = %s\n[log]\ntarget = \"stderr\"\nlevel = \"debug\"\n\n"
                  "[[listen]]\nprotocol = \"socketmap\"\naddress = \"unix:%s\"\n\n"
                  "[[map]]\nmodule = %s\noptions = \"0\"\n\n"
                  "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
                  "[backend.store1]\nhost = \"127.0.0.1\"\nlmtp = %d\n\n"
                  "[backend.store2]\nhost = \"127.0.0.1\"\nlmtp = %d\n"
                  % (toml_string(harness.map_dir()), cls.sock,
                     toml_string(harness.test_module("sleepmap")), toml_string(cls.map_path),
                     cls.store1.lmtp_port, cls.store2.lmtp_port))
        cls.proxy = Switchyard(None, os.path.join(cls.tmp, "proxy"), config, ports=[])
        harness.wait_until(lambda: os.path.exists(cls.sock), 10, "the socketmap socket")
        spec = "socketmap:unix:%s:" % cls.sock
        cls.postfix = Postfix(os.path.join(cls.tmp, "postfix"), domains=("example.test",),
                              virtual_transport="lmtp:inet:127.0.0.1:1",  # never used
                              transport_maps=spec + "transport",
                              virtual_mailbox_maps=spec + "mailbox")
        cls.spec = spec

    @classmethod
    def tearDownClass(cls):
        for s in ("postfix", "proxy", "store1", "store2"):
            if getattr(cls, s, None):
                getattr(cls, s).stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def query(self, key, table):
        return self.postfix.postmap_query(key, self.spec + table)

    def test_postmap_transport_mailbox_backend(self):
        r = self.query("amy@example.test", "transport")
        self.assertEqual((r.code, r.output.strip()),
                         (0, "lmtp:inet:127.0.0.1:%d" % self.store1.lmtp_port))
        r = self.query("Bea@Example.Test", "transport")  # the username policy lowercases
        self.assertEqual(r.output.strip(), "lmtp:inet:127.0.0.1:%d" % self.store2.lmtp_port)
        self.assertEqual(self.query("amy@example.test", "mailbox").output.strip(), "store1")
        self.assertEqual(self.query("direct@example.test", "backend").output.strip(),
                         "127.0.0.1:%d" % self.store2.lmtp_port)
        r = self.query("nobody@example.test", "transport")
        self.assertEqual(r.code, 1, "not found")

    def test_hold_and_map_failure_are_temporary(self):
        # postmap exits 1 for not found and for errors alike: its stderr tells them apart.
        r = self.query("moving@example.test", "transport")
        self.assertEqual(r.code, 1)
        self.assertIn("mailbox is being moved", r.errors)
        r = self.query("tempfail", "transport")
        self.assertIn("map lookup failed", r.errors)
        r = self.query("amy@example.test", "nosuchtable")
        self.assertIn("unknown table", r.errors)
        r = self.query("nobody@example.test", "transport")
        self.assertEqual(r.errors.strip(), "", "a plain not-found is no error")

    def test_postfix_routes_by_the_transport_table(self):
        start = len(self.postfix.log_text())
        result = self.postfix.send("sender@example.test",
                                   ["amy@example.test", "bea@example.test"],
                                   message("routed", "amy@example.test, bea@example.test"))
        self.assertTrue(result.ok, result)
        self.postfix.wait_status("amy@example.test", "sent", start=start)
        self.postfix.wait_status("bea@example.test", "sent", start=start)
        self.assertEqual(len(self.store1.mailbox_files("amy")), 1)
        self.assertEqual(len(self.store2.mailbox_files("bea")), 1)
        # An address no map knows is refused by virtual_mailbox_maps at RCPT time.
        refused = self.postfix.send("sender@example.test", ["ghost@example.test"],
                                    message("ghost", "ghost@example.test"))
        self.assertFalse(refused.ok)
        self.assertEqual(refused.rcpt["ghost@example.test"][0] // 100, 5, refused)
        # A user on hold is deferred (4xx), never bounced: the sender retries later.
        held = self.postfix.send("sender@example.test", ["moving@example.test"],
                                 message("held", "moving@example.test"))
        self.assertEqual(held.rcpt["moving@example.test"][0] // 100, 4, held)


class HungDirectoryTest(unittest.TestCase):
    """A directory that stops answering: the socketmap client gets TEMP within the lookup
    timeout (so Postfix defers, never bounces), its connection stays usable, and answers
    come again once the directory does."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-socketmap-hung-")
        os.chmod(cls.tmp, 0o755)
        map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"),
                                   [("amy@example.test", "127.0.0.1:2424")])
        cls.sock = os.path.join(cls.tmp, "socketmap")
        config = ("workers = 1\nmap_dir = %s\n[log]\ntarget = \"stderr\"\nlevel = \"info\"\n\n"
                  "[[listen]]\nprotocol = \"socketmap\"\naddress = \"unix:%s\"\n\n"
                  "[[map]]\nmodule = %s\noptions = \"2000\"\n\n"
                  "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
                  "[lookup]\ntimeout = \"500ms\"\ncache_size = 0\n"
                  % (toml_string(harness.map_dir()), cls.sock,
                     toml_string(harness.test_module("sleepmap")), toml_string(map_path)))
        cls.proxy = Switchyard(None, os.path.join(cls.tmp, "proxy"), config, ports=[])
        harness.wait_until(lambda: cls.accepts(cls.sock), 10, "the socketmap socket")

    @staticmethod
    def accepts(path):
        """True when the socket at `path` takes a connection (bound is not enough)."""
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(path)
            return True
        except OSError:
            return False
        finally:
            probe.close()

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def ask(self, conn, request):
        data = request.encode()
        conn.sendall(b"%d:%s," % (len(data), data))
        reply = b""
        while not reply.endswith(b","):
            chunk = conn.recv(4096)
            self.assertTrue(chunk, "the socketmap connection was closed")
            reply += chunk
        return reply.split(b":", 1)[1][:-1].decode()

    def test_a_hung_directory_gives_temp_and_the_connection_goes_on(self):
        conn = socket.socket(socket.AF_UNIX)
        self.addCleanup(conn.close)
        conn.settimeout(10)
        conn.connect(self.sock)
        started = time.monotonic()
        self.assertEqual(self.ask(conn, "transport slowamy@example.test"),
                         "TEMP map lookup failed")
        self.assertLess(time.monotonic() - started, 1.5, "TEMP within the lookup timeout")
        # Once the directory answers again, the same connection gets answers.
        harness.wait_until(
            lambda: self.ask(conn, "transport amy@example.test") == "OK lmtp:inet:127.0.0.1:24",
            10, "answers after the directory recovered")


if __name__ == "__main__":
    unittest.main()
