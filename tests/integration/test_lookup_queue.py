"""The lookup queue is bounded and fair (issue 12, item 3): an attacker who sends many
pre-auth logins for names a slow directory has to look up cannot starve a legitimate
user's login, and once the attacker is gone the queue is empty again at once.

A real Dovecot store and a real Switchyard on loopback; the slow directory is the test
map module tests/modules/sleepmap (100 ms per "slow..." key, then not found).
"""

import os
import re
import shutil
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Dovecot, LineClient, Switchyard, backend_section, make_sqlite_map  # noqa: E402

HOST = "127.0.0.1"
ATTACKER = "127.0.0.2"
ATTACKS = 300


class LookupQueueTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-lookupq-")
        os.chmod(cls.tmp, 0o755)
        cls.store = Dovecot("lq", os.path.join(cls.tmp, "store"), users={"ann": "ann-pw"})
        map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"), [("ann", "store1")])
        cls.port = harness.free_port()
        config = harness.switchyard_config(
            cls.port, maps=[(harness.test_module("sleepmap"), "100"), ("sqlite", map_path)],
            backends=backend_section("store1", cls.store.imap_port), workers=1, level="info",
            limits={"auth_failure_delay": "0s", "max_login_attempts": 100},
            extra="[lookup]\ntimeout = \"3s\"\ncache_size = 0\nqueue_limit = 64\n"
                  "per_client_limit = 8\n")
        cls.proxy = Switchyard(None, os.path.join(cls.tmp, "proxy"), config)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        cls.store.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def attack(self, n):
        """n connections from ATTACKER, each asking for a slow unknown name, unanswered."""
        socks = []
        for i in range(n):
            s = socket.socket()
            s.bind((ATTACKER, 0))
            s.connect((HOST, self.port))
            s.sendall(b"a LOGIN slow%d x\r\n" % i)
            socks.append(s)
        return socks

    def login_time(self):
        started = time.monotonic()
        c = LineClient(HOST, self.port, timeout=20)
        try:
            c.readline()
            _, tagged = c.command("a", b"LOGIN ann ann-pw", timeout=20)
        finally:
            c.close()
        return tagged, time.monotonic() - started

    def test_a_flood_of_slow_lookups_does_not_starve_other_clients(self):
        socks = self.attack(ATTACKS)
        try:
            # Let the attack reach the worker before the legitimate login.
            harness.wait_for_log(self.proxy.log_path, r"too many lookups from this address", 10)
            tagged, took = self.login_time()
            self.assertTrue(tagged.startswith(b"a OK"), tagged)
            # At most per_client_limit slow questions are ahead of ours: 8 x 100 ms.
            self.assertLess(took, 2.5, "a legitimate login waited behind the attack")
        finally:
            for s in socks:
                s.close()
        # The attacker gone, nothing of theirs is left to slow anybody down.
        tagged, took = self.login_time()
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        self.assertLess(took, 1.5)

    def test_lookups_nobody_waits_for_are_dropped(self):
        # Eight addresses fill the whole queue (8 x 8 = 64 questions, 6.4 s of the slow
        # map's time) and wait; their 3 s deadline passes. The questions not yet asked by
        # then are dropped, so the next login is answered at once, not 3.4 s later.
        start = len(self.proxy.log_text())
        socks = []
        try:
            for n in range(8):
                for i in range(8):
                    s = socket.socket()
                    s.bind(("127.0.0.%d" % (10 + n), 0))
                    s.connect((HOST, self.port))
                    s.sendall(b"a LOGIN slowdrop%d-%d x\r\n" % (n, i))
                    socks.append(s)
            # Every attacking login has its answer: unknown user, or its deadline passed.
            harness.wait_until(
                lambda: len(re.findall(r'login failed: .*user="slowdrop.*result=(unknown-user|'
                                       r'tempfail)', self.proxy.log_text()[start:])) >= 64,
                15, "the attackers' deadlines")
            timed_out = self.proxy.log_text()[start:].count("lookup timed out")
            self.assertGreater(timed_out, 10, "the attack did not outlast its deadline")
            tagged, took = self.login_time()
            self.assertTrue(tagged.startswith(b"a OK"), tagged)
            self.assertLess(took, 1.0, "the login waited behind questions nobody wanted")
        finally:
            for s in socks:
                s.close()

if __name__ == "__main__":
    unittest.main()
