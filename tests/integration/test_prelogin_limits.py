"""What clients that never log in may hold (issue 12, item 5): a per-worker and a
per-address cap on sessions before login, and one budget for all the literals of one
IMAP command. A real Switchyard and Dovecot on loopback.
"""

import os
import shutil
import socket
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Dovecot, LineClient, Switchyard, backend_section, make_sqlite_map  # noqa: E402

HOST = "127.0.0.1"


def worker_rss_kb(master_pid):
    total = 0
    for pid in harness.children_of(master_pid):
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


class PreLoginLimitsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-prelogin-")
        os.chmod(cls.tmp, 0o755)
        cls.store = Dovecot("pl", os.path.join(cls.tmp, "store"), users={"ann": "ann-pw"})
        map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"), [("ann", "store1")])
        cls.port = harness.free_port()
        config = harness.switchyard_config(
            cls.port, maps=[("sqlite", map_path)],
            backends=backend_section("store1", cls.store.imap_port), workers=1, level="info",
            limits={"max_prelogin_per_ip": 3, "max_prelogin_sessions": 400})
        cls.proxy = Switchyard(None, os.path.join(cls.tmp, "proxy"), config)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        cls.store.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def connect(self, source=HOST):
        c = LineClient(HOST, self.port)
        self.addCleanup(c.close)
        return c

    def test_one_address_gets_its_share_and_others_still_get_in(self):
        waiting = []
        for _ in range(3):
            c = self.connect()
            self.assertTrue(c.readline().startswith(b"* OK"))
            waiting.append(c)
        extra = self.connect()
        self.assertTrue(extra.readline().startswith(b"* BYE Too many connections from your address"))
        self.assertEqual(extra.wait_eof(5.0), b"")
        # Another address is not affected.
        other = socket.socket()
        self.addCleanup(other.close)
        other.bind(("127.0.0.2", 0))
        other.connect((HOST, self.port))
        self.assertTrue(other.makefile("rb").readline().startswith(b"* OK"))
        # A logged-in session no longer counts against the address.
        _, tagged = waiting[0].command("a", b"LOGIN ann ann-pw")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        again = self.connect()
        self.assertTrue(again.readline().startswith(b"* OK"))

    def test_literals_of_one_command_have_one_budget(self):
        # 64 non-synchronising 8 KiB literals in one LOGIN: past 64 KiB the session ends
        # instead of holding half a megabyte for a client that never finishes the line.
        c = self.connect()
        c.readline()
        chunk = b"x" * 8192
        try:
            c.send(b"a LOGIN")
            for _ in range(64):
                c.send(b" {8192+}\r\n" + chunk)
        except OSError:
            pass  # closed under our feet: what is wanted
        reply = c.wait_eof(5.0)
        self.assertIn(b"literal too large", reply)

    def test_many_stalled_literal_commands_stay_small(self):
        # 100 clients (3 per address) each send a LOGIN with 24 literals of 8000 bytes
        # (192 KB) and never end the line. Without a budget for one command's literals the
        # worker holds all of it (about 19 MB); with it, each is cut off past 64 KiB.
        before = worker_rss_kb(self.proxy.pid)
        socks = []
        try:
            for i in range(100):
                s = socket.socket()
                s.bind(("127.0.%d.%d" % (1 + i // 3 % 200, 10 + i % 3), 0))
                s.connect((HOST, self.port))
                socks.append(s)
                try:
                    s.sendall(b"a LOGIN")
                    for _ in range(24):
                        s.sendall(b" {8000+}\r\n" + b"y" * 8000)
                except OSError:
                    pass  # cut off: what is wanted
            harness.wait_until(lambda: "literal too large" in self.proxy.log_text(), 10,
                               "the budget to end a command")
            grown = worker_rss_kb(self.proxy.pid) - before
            print("\n  100 clients x 192 KB of literals in one command: worker RSS +%d kB"
                  % grown, file=sys.stderr)
            # ASan's redzones and quarantine of freed blocks roughly double what stays.
            limit = 8 * 1024 * (2 if harness.SANITIZED else 1)
            self.assertLess(grown, limit, "worker grew by %d kB" % grown)
        finally:
            for s in socks:
                s.close()

    def test_memory_comes_back_once_the_crowd_has_gone(self):
        # 300 clients (3 per address) each send a LOGIN with literals just under the
        # command's 64 KiB budget and wait: ~18 MB held in the worker. Once they have gone,
        # the worker gives that memory back to the system (malloc_trim) within seconds.
        before = worker_rss_kb(self.proxy.pid)
        socks = []
        try:
            for i in range(300):
                s = socket.socket()
                s.bind(("127.1.%d.%d" % (1 + i // 3, 10 + i % 3), 0))
                s.connect((HOST, self.port))
                socks.append(s)
                s.sendall(b"a LOGIN")
                for _ in range(7):
                    s.sendall(b" {8000+}\r\n" + b"z" * 8000)
            harness.wait_until(lambda: worker_rss_kb(self.proxy.pid) - before > 10 * 1024, 20,
                               "the worker to hold the clients' literals")
            peak = worker_rss_kb(self.proxy.pid)
        finally:
            for s in socks:
                s.close()
        if harness.SANITIZED:
            # ASan's allocator, not glibc's malloc, holds the memory: malloc_trim has
            # nothing to give back there. The worker must still serve.
            with LineClient(HOST, self.port) as c:
                self.assertTrue(c.readline().startswith(b"* OK"))
            return
        harness.wait_until(lambda: worker_rss_kb(self.proxy.pid) - before < 4 * 1024, 20,
                           "the worker to give the memory back")
        print("\n  300 clients x 56 KB of literals: worker RSS %d kB -> %d kB -> %d kB"
              % (before, peak, worker_rss_kb(self.proxy.pid)), file=sys.stderr)

if __name__ == "__main__":
    unittest.main()
