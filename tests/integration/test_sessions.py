"""Every session kind in one registry: switchyardctl who lists IMAP, LMTP (with the
transaction's recipients) and socketmap sessions; kick matches the map key whatever the
login's spelling; SIGTERM tells each kind what it should hear (an idle LMTP client 421, a
socketmap client the end of its connection) and never cuts an LMTP transaction in DATA.

Real Dovecot store and a real Switchyard on loopback, stopped by PID.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Dovecot, LineClient, Switchyard, make_sqlite_map, toml_string  # noqa: E402

HOST = "127.0.0.1"


def netstring(s):
    b = s.encode()
    return b"%d:%s," % (len(b), b)


class SessionRegistryTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="switchyard-sessions-")
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.store = Dovecot("reg", os.path.join(self.tmp, "store"), users={"ann": "ann-pw"},
                             extra_conf="auth_username_format = %n\n")
        self.addCleanup(self.store.stop)
        map_path = make_sqlite_map(os.path.join(self.tmp, "users.db"),
                                   [("ann@example.test", "store1")])
        self.imap_port, self.lmtp_port, self.smap_port = harness.free_ports(3)
        self.ctl_dir = os.path.join(self.tmp, "ctl")
        config = ("workers = 1\nmap_dir = %s\ncontrol_dir = %s\n"
                  "[log]\ntarget = \"stderr\"\nlevel = \"info\"\n\n"
                  "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[listen]]\nprotocol = \"lmtp\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[listen]]\nprotocol = \"socketmap\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
                  "[username]\nstrip_domain = false\n\n"
                  "[backend.store1]\nhost = \"127.0.0.1\"\nimap = %d\nlmtp = %d\n"
                  % (toml_string(harness.map_dir()), toml_string(self.ctl_dir), self.imap_port,
                     self.lmtp_port, self.smap_port, toml_string(map_path),
                     self.store.imap_port, self.store.lmtp_port))
        self.proxy = Switchyard(None, os.path.join(self.tmp, "proxy"), config)
        self.addCleanup(self.proxy.stop)

    def ctl(self, *args):
        tool = os.path.join(harness.build_dir(), "switchyardctl")
        return subprocess.run([tool, "-c", self.proxy.conf_path] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=30)

    def client(self, port):
        c = LineClient(HOST, port)
        self.addCleanup(c.close)
        return c

    def lmtp_client(self):
        c = self.client(self.lmtp_port)
        self.assertTrue(c.readline().startswith(b"220 "))
        c.send(b"LHLO client.test\r\n")
        while not c.readline().startswith(b"250 "):
            pass
        return c

    def message_ids(self):
        ids = []
        for path in self.store.mailbox_files("ann"):
            with open(path, "rb") as f:
                ids += [line.split(b"<")[1].split(b"@")[0].decode()
                        for line in f.read().splitlines() if line.startswith(b"Message-ID:")]
        return ids

    def test_who_lists_every_kind_and_kick_matches_any_spelling(self):
        imap = self.client(self.imap_port)
        imap.readline()
        _, tagged = imap.command("a", b"LOGIN Ann@Example.TEST ann-pw")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        lmtp = self.lmtp_client()
        lmtp.send(b"MAIL FROM:<s@example.test>\r\nRCPT TO:<ann@example.test>\r\n")
        self.assertTrue(lmtp.readline().startswith(b"250"))
        self.assertTrue(lmtp.readline().startswith(b"250"))
        smap = self.client(self.smap_port)
        smap.send(netstring("mailbox ann@example.test"))
        self.assertEqual(smap.read_exact(len(netstring("OK store1"))), netstring("OK store1"))

        who = self.ctl("who").stdout
        self.assertRegex(who, r"\d+ imap relay client=127\.0\.0\.1:\d+ user=\"Ann@Example.TEST\" "
                              r"server=127\S+ key=\"ann@example.test\"")
        self.assertRegex(who, r"\d+ lmtp transaction client=127\.0\.0\.1:\d+ "
                              r"from=\"s@example.test\" to=\"ann@example.test\"")
        self.assertRegex(who, r"\d+ socketmap lookups client=127\.0\.0\.1:\d+ requests=1")
        ids = [line.split()[0] for line in who.splitlines() if line and line[0].isdigit()]
        self.assertEqual(len(ids), len(set(ids)), who)

        # The map key, not the login as typed: another spelling still finds the session.
        self.assertEqual(self.ctl("kick", "ANN@example.test").stdout.strip(), "kicked 1 sessions")
        self.assertEqual(imap.wait_eof(5.0), b"")
        self.assertNotIn("imap relay", self.ctl("who").stdout)

    def test_sigterm_closes_idle_lmtp_and_socketmap_but_finishes_data(self):
        idle = self.lmtp_client()
        smap = self.client(self.smap_port)
        smap.send(netstring("transport ann@example.test"))
        reply = netstring("OK lmtp:inet:127.0.0.1:%d" % self.store.lmtp_port)
        self.assertEqual(smap.read_exact(len(reply)), reply)
        busy = self.lmtp_client()
        busy.send(b"MAIL FROM:<s@example.test>\r\nRCPT TO:<ann@example.test>\r\nDATA\r\n")
        for expect in (b"250", b"250", b"354"):
            self.assertTrue(busy.readline().startswith(expect))
        busy.send(b"Message-ID: <during-stop@test>\r\nSubject: x\r\n\r\nfirst half\r\n")
        harness.wait_until(lambda: "lmtp transaction" in self.ctl("who").stdout, 10,
                           "the transaction is registered")

        os.kill(self.proxy.pid, signal.SIGTERM)
        self.assertTrue(idle.readline(10).startswith(b"421 4.3.2"), "idle LMTP is told")
        self.assertEqual(idle.wait_eof(5.0), b"")
        self.assertEqual(smap.wait_eof(5.0), b"", "socketmap connection closed")
        # The transaction in DATA goes on: its message is delivered, then it is told.
        busy.send(b"second half\r\n.\r\n")
        self.assertTrue(busy.readline(10).startswith(b"250 2.0.0"))
        self.assertTrue(busy.readline(10).startswith(b"421 4.3.2"))
        self.assertEqual(self.message_ids(), ["during-stop"])
        self.assertEqual(self.proxy.process.wait(15), 0)


    def imap_login(self, user, password="ann-pw"):
        c = LineClient(HOST, self.imap_port)
        try:
            c.readline()
            _, tagged = c.command("a", b"LOGIN " + user.encode() + b" " + password.encode())
            return tagged
        finally:
            c.close()

    def test_hold_waits_for_deliveries_and_survives_reload_until_release(self):
        imap = self.client(self.imap_port)
        imap.readline()
        _, tagged = imap.command("a", b"LOGIN Ann@Example.TEST ann-pw")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        busy = self.lmtp_client()
        busy.send(b"MAIL FROM:<s@example.test>\r\nRCPT TO:<ann@example.test>\r\nDATA\r\n")
        for expect in (b"250", b"250", b"354"):
            self.assertTrue(busy.readline().startswith(expect))
        busy.send(b"Message-ID: <before-hold@test>\r\n\r\nbody\r\n")

        tool = os.path.join(harness.build_dir(), "switchyardctl")
        hold = subprocess.Popen([tool, "-c", self.proxy.conf_path, "-t", "20", "hold",
                                 "ann@EXAMPLE.test"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        self.addCleanup(lambda: hold.poll() is None and hold.kill())
        # The IMAP session of another spelling ends; the delivery under way does not.
        self.assertEqual(imap.wait_eof(10.0), b"")
        harness.wait_for_log(self.proxy.log_path, r'control: holding "ann@example.test"', 10)
        self.assertIsNone(hold.poll(), "hold returned while a delivery was in flight")
        self.assertIn("NO [UNAVAILABLE]", self.imap_login("ann@example.test").decode())
        other = self.lmtp_client()
        other.send(b"MAIL FROM:<s@example.test>\r\nRCPT TO:<ann@example.test>\r\n")
        self.assertTrue(other.readline().startswith(b"250"))
        self.assertTrue(other.readline().startswith(b"451 4.2.1"))
        smap = self.client(self.smap_port)
        smap.send(netstring("mailbox ann@example.test"))
        reply = netstring("TEMP mailbox is being moved")
        self.assertEqual(smap.read_exact(len(reply)), reply)

        busy.send(b".\r\n")
        final = busy.readline(10)
        self.assertTrue(final.startswith(b"250 2.0.0"), (final, self.proxy.log_text()[-3000:]))
        out, _ = hold.communicate(timeout=20)
        self.assertEqual(hold.returncode, 0, out)
        self.assertIn("nothing in flight", out)
        self.assertEqual(self.message_ids(), ["before-hold"])
        self.assertIn("holds ann@example.test", self.ctl("status").stdout)

        # A reload starts new workers: they read the hold.
        start = len(self.proxy.log_text())
        os.kill(self.proxy.pid, signal.SIGHUP)
        harness.wait_for_log(self.proxy.log_path, r"configuration reloaded", 10, start=start)
        self.assertIn("NO [UNAVAILABLE]", self.imap_login("ann@example.test").decode())

        r = self.ctl("release", "Ann@example.test")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertTrue(self.imap_login("ann@example.test").startswith(b"a OK"))
        self.assertNotIn("holds", self.ctl("status").stdout)


if __name__ == "__main__":
    unittest.main()
