"""The client's identity carried to the store: IMAP ID forwarding (x-originating-ip and
friends) seen in a real Dovecot's own log, and the client's own ID fields passed on.
"""

import os
import shutil
import struct
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Dovecot, Switchyard, make_sqlite_map, toml_string  # noqa: E402

HOST = "127.0.0.1"


def client_from(source_ip, port):
    """A connection to the proxy whose source address is `source_ip` (any 127/8 works)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((source_ip, 0))
    s.connect((HOST, port))
    return s, s.makefile("rwb")


class IdentityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-identity-")
        os.chmod(cls.tmp, 0o755)
        cls.store = Dovecot("idstore", os.path.join(cls.tmp, "store"),
                            users={"fwd": "fwd-pw", "plain": "plain-pw"},
                            extra_conf="imap_id_log = *\n")
        cls.map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"),
                                       [("fwd", "forwarding"), ("plain", "quiet")])

    @classmethod
    def tearDownClass(cls):
        cls.store.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def proxy(self, name, extra_listen="", extra="", workers=0):
        port = harness.free_port()
        config = ("workers = %d\nmap_dir = %s\n[log]\ntarget = \"stderr\"\nlevel = \"debug\"\n\n"
                  "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:%d\"\n%s\n"
                  "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
                  "[backend.forwarding]\nhost = \"127.0.0.1\"\nimap = %d\n"
                  "forward_client_ip = true\n\n"
                  "[backend.quiet]\nhost = \"127.0.0.1\"\nimap = %d\n"
                  % (workers, toml_string(harness.map_dir()), port, extra_listen,
                     toml_string(self.map_path), self.store.imap_port, self.store.imap_port)
                  + extra)
        p = Switchyard(None, os.path.join(self.tmp, name), config)
        self.addCleanup(p.stop)
        return p

    def test_forwarded_client_address_is_what_dovecot_logs(self):
        p = self.proxy("forward")
        start = len(self.store.log_text())
        s, f = client_from("127.0.0.5", p.port)
        self.addCleanup(s.close)
        self.assertTrue(f.readline().startswith(b"* OK"))
        f.write(b'i ID ("name" "TestMUA" "version" "1.0" "x-originating-ip" "6.6.6.6")\r\n'
                b"a LOGIN fwd fwd-pw\r\n")
        f.flush()
        lines = []
        while not lines or not lines[-1].startswith(b"a "):
            lines.append(f.readline())
        self.assertTrue(lines[-1].startswith(b"a OK"), lines)
        self.assertFalse(any(b"SYID" in l for l in lines), "the proxy's own ID stays hidden")
        m = harness.wait_for_log(self.store.log_path,
                                 r"Login: user=<fwd>.*rip=(\S+?),", 10, start)
        self.assertEqual(m.group(1), "127.0.0.5")
        # The client's ID reached the store, without its attempt to set x-originating-ip.
        log = harness.wait_for_log(self.store.log_path, r"ID sent: .*TestMUA.*", 10,
                                   start).group(0)
        self.assertNotIn("6.6.6.6", log)
        self.assertIn("x-session-id", log)

    def test_without_forwarding_the_store_sees_the_proxy(self):
        p = self.proxy("quiet")
        start = len(self.store.log_text())
        s, f = client_from("127.0.0.6", p.port)
        self.addCleanup(s.close)
        f.readline()
        f.write(b"a LOGIN plain plain-pw\r\n")
        f.flush()
        self.assertTrue(f.readline().startswith(b"a OK"))
        m = harness.wait_for_log(self.store.log_path, r"Login: user=<plain>.*rip=(\S+?),", 10,
                                 start)
        self.assertEqual(m.group(1), "127.0.0.1")


    # -- brute force ------------------------------------------------------------

    def failed_login(self, source, port):
        s, f = client_from(source, port)
        try:
            greeting = f.readline()
            if not greeting.startswith(b"* OK"):
                return greeting, 0.0
            t0 = time.monotonic()
            f.write(b"a LOGIN fwd wrong-password\r\n")
            f.flush()
            return f.readline(), time.monotonic() - t0
        finally:
            s.close()

    def test_failed_logins_slow_down_then_block_the_address(self):
        p = self.proxy("penalty", workers=2, extra=(
            "[limits]\nauth_failure_delay = \"400ms\"\nauth_failure_delay_max = \"2s\"\n"
            "auth_failure_block_after = 3\nauth_failure_window = \"1m\"\n"
            "auth_failure_exempt = []\n"))
        reply, first = self.failed_login("127.0.0.9", p.port)
        self.assertTrue(reply.startswith(b"a NO"), reply)
        reply, second = self.failed_login("127.0.0.9", p.port)
        self.assertTrue(reply.startswith(b"a NO"), reply)
        self.assertGreaterEqual(first, 0.4)
        self.assertGreaterEqual(second, 0.8, "the delay doubles")
        self.failed_login("127.0.0.9", p.port)
        # Blocked now, whichever worker takes the connection: the table is shared.
        for _ in range(3):
            reply, _ = self.failed_login("127.0.0.9", p.port)
            self.assertTrue(reply.startswith(b"* BYE Too many failed logins"), reply)
        # Another address is not affected, and a good login from it still works.
        s, f = client_from("127.0.0.10", p.port)
        self.addCleanup(s.close)
        f.readline()
        f.write(b"a LOGIN fwd fwd-pw\r\n")
        f.flush()
        self.assertTrue(f.readline().startswith(b"a OK"))

    def test_max_connections_per_ip(self):
        p = self.proxy("connlimit", extra_listen="max_connections_per_ip = 2\n")
        held = []
        for _ in range(2):
            s, f = client_from("127.0.0.11", p.port)
            self.addCleanup(s.close)
            self.assertTrue(f.readline().startswith(b"* OK"))
            held.append(s)
        s, f = client_from("127.0.0.11", p.port)
        self.addCleanup(s.close)
        self.assertTrue(f.readline().startswith(b"* BYE Too many connections"))
        s2, f2 = client_from("127.0.0.12", p.port)
        self.addCleanup(s2.close)
        self.assertTrue(f2.readline().startswith(b"* OK"), "other addresses are not limited")
        held[0].close()
        harness.wait_until(lambda: self._greets("127.0.0.11", p.port), 10,
                           "a freed connection slot")

    def _greets(self, source, port):
        s, f = client_from(source, port)
        try:
            return f.readline().startswith(b"* OK")
        finally:
            s.close()


    # -- PROXY protocol ---------------------------------------------------------

    def proxied(self, trusted='["127.0.0.0/8"]', allow_plaintext=True):
        listen = "proxy_protocol = true\ntrusted_proxies = %s\n" % trusted
        if allow_plaintext is not None:
            listen += "allow_plaintext_auth = %s\n" % ("true" if allow_plaintext else "false")
        return self.proxy("pp-%d" % harness.free_port(), extra_listen=listen)

    @staticmethod
    def v2_header(src6, dst6, sport, dport):
        body = (socket.inet_pton(socket.AF_INET6, src6) + socket.inet_pton(socket.AF_INET6, dst6)
                + struct.pack("!HH", sport, dport))
        return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x21]) + struct.pack("!H", len(body))
                + body)

    def login_through(self, port, header, user=b"fwd", password=b"fwd-pw"):
        s = socket.create_connection((HOST, port), timeout=10)
        self.addCleanup(s.close)
        f = s.makefile("rwb")
        # The header and the first command in one packet: the command must survive.
        s.sendall(header + b"a LOGIN " + user + b" " + password + b"\r\n")
        greeting = f.readline()
        return greeting, f.readline()

    def test_proxy_v1_from_trusted_address_carries_the_client(self):
        p = self.proxied()
        start = len(self.store.log_text())
        greeting, reply = self.login_through(
            p.port, b"PROXY TCP4 192.0.2.7 127.0.0.1 40001 143\r\n")
        self.assertTrue(greeting.startswith(b"* OK"), greeting)
        self.assertTrue(reply.startswith(b"a OK"), reply)
        m = harness.wait_for_log(self.store.log_path, r"Login: user=<fwd>.*rip=(\S+?),", 10, start)
        self.assertEqual(m.group(1), "192.0.2.7")
        harness.wait_for_log(p.log_path, r"imap login ok: .*client=192\.0\.2\.7:40001", 10)

    def test_proxy_v2_ipv6_client(self):
        p = self.proxied()
        start = len(self.store.log_text())
        greeting, reply = self.login_through(
            p.port, self.v2_header("2001:db8::7", "2001:db8::1", 40002, 143))
        self.assertTrue(reply.startswith(b"a OK"), reply)
        m = harness.wait_for_log(self.store.log_path, r"Login: user=<fwd>.*rip=(\S+?),", 10, start)
        self.assertEqual(m.group(1), "2001:db8::7")

    def test_proxied_remote_client_gets_logindisabled_without_tls(self):
        p = self.proxied(allow_plaintext=None)
        greeting, reply = self.login_through(
            p.port, b"PROXY TCP4 192.0.2.8 127.0.0.1 40003 143\r\n")
        self.assertIn(b"LOGINDISABLED", greeting)
        self.assertTrue(reply.startswith(b"a NO [PRIVACYREQUIRED]"), reply)
        # The same through a v2 LOCAL header (a health check) keeps the loopback address.
        local = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00]) + b"\x00\x00"
        greeting, reply = self.login_through(p.port, local)
        self.assertIn(b"AUTH=PLAIN", greeting)
        self.assertTrue(reply.startswith(b"a OK"), reply)

    def test_proxy_header_from_untrusted_address_is_refused(self):
        p = self.proxied(trusted='["10.0.0.0/8"]')
        greeting, _ = self.login_through(p.port, b"PROXY TCP4 192.0.2.9 127.0.0.1 1 143\r\n")
        self.assertEqual(greeting, b"", "closed without a greeting")
        harness.wait_for_log(p.log_path, r"untrusted address", 10)

    def test_malformed_proxy_header_is_refused(self):
        p = self.proxied()
        for bad in (b"PROXY TCP4 999.0.2.9 127.0.0.1 1 143\r\n", b"a LOGIN x y\r\n",
                    b"PROXY TCP4 192.0.2.9 127.0.0.1 1 143\n"):
            greeting, _ = self.login_through(p.port, bad)
            self.assertEqual(greeting, b"", bad)
        harness.wait_for_log(p.log_path, r"bad PROXY header", 10)


if __name__ == "__main__":
    unittest.main()
