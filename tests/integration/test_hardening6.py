"""Smaller holes of issue 12 (item 6), each shown first as an attacker would use it:

- A trusted proxy's PROXY header that relays a client without an IP address (v2 AF_UNIX,
  v1 UNKNOWN) does not make the client a loopback client: on a plain listener it sees
  LOGINDISABLED and gets NO [PRIVACYREQUIRED] (POP3: no USER, -ERR [AUTH]), and its failed
  logins are counted under the proxy's address even though loopback is exempt by default.
- AUTHENTICATE (IMAP) or AUTH (POP3) cancelled with "*" counts as a bad command, so a
  client cannot go round for ever: max_bad_commands cancels end the session with the
  too-many-invalid-commands goodbye.

No store is needed: every answer here comes from Switchyard itself (unknown users fail in
the map).
"""

import os
import shutil
import socket
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Switchyard, make_sqlite_map, toml_string  # noqa: E402

HOST = "127.0.0.1"
MAX_BAD = 3
BLOCK_AFTER = 2


def v2_unix_header(src_path=b"/run/haproxy/imap.sock", dst_path=b"/run/haproxy/in.sock"):
    """PROXY v2, command PROXY, AF_UNIX + STREAM: two 108-byte NUL-padded paths."""
    body = src_path.ljust(108, b"\0") + dst_path.ljust(108, b"\0")
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x31]) + struct.pack("!H", len(body))
            + body)


def v2_tcp4_header(src_ip, dst_ip="127.0.0.1", sport=40000, dport=143):
    body = (socket.inet_aton(src_ip) + socket.inet_aton(dst_ip)
            + struct.pack("!HH", sport, dport))
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body))
            + body)


class Connection:
    """A client socket from a chosen 127/8 source address (the "proxy")."""

    def __init__(self, test, port, source=HOST, header=b""):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        test.addCleanup(self.sock.close)
        self.sock.settimeout(10)
        self.sock.bind((source, 0))
        self.sock.connect((HOST, port))
        self.file = self.sock.makefile("rwb")
        if header:
            self.sock.sendall(header)

    def say(self, line):
        self.file.write(line + b"\r\n")
        self.file.flush()
        return self.file.readline()

    def readline(self):
        return self.file.readline()


class HardeningTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-hardening6-")
        os.chmod(cls.tmp, 0o755)
        cls.map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"), [("known", "store")])
        (cls.imap_proxied, cls.pop3_proxied, cls.imap_proxied_open, cls.imap, cls.pop3,
         store_port) = harness.free_ports(6)
        proxied = "proxy_protocol = true\ntrusted_proxies = [\"127.0.0.0/8\"]\n"
        config = (
            "workers = 1\nmap_dir = %s\n[log]\ntarget = \"stderr\"\nlevel = \"debug\"\n\n"
            "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:%d\"\n%s\n"
            "[[listen]]\nprotocol = \"pop3\"\naddress = \"127.0.0.1:%d\"\n%s\n"
            "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:%d\"\n%s"
            "allow_plaintext_auth = true\n\n"
            "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:%d\"\n\n"
            "[[listen]]\nprotocol = \"pop3\"\naddress = \"127.0.0.1:%d\"\n\n"
            "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
            "[limits]\nmax_bad_commands = %d\nmax_login_attempts = 10\n"
            "auth_failure_delay = \"0s\"\nauth_failure_block_after = %d\n\n"
            "[backend.store]\nhost = \"127.0.0.1\"\nimap = %d\npop3 = %d\n"
            % (toml_string(harness.map_dir()), cls.imap_proxied, proxied, cls.pop3_proxied,
               proxied, cls.imap_proxied_open, proxied, cls.imap, cls.pop3,
               toml_string(cls.map_path), MAX_BAD, BLOCK_AFTER, store_port, store_port))
        cls.proxy = Switchyard(None, os.path.join(cls.tmp, "proxy"), config)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- a PROXY header's client without an IP address is not loopback ------------------

    def test_proxy_v2_unix_client_is_not_loopback_for_imap(self):
        c = Connection(self, self.imap_proxied, "127.0.0.3", v2_unix_header())
        greeting = c.readline()
        self.assertTrue(greeting.startswith(b"* OK"), greeting)
        self.assertIn(b"LOGINDISABLED", greeting)
        self.assertNotIn(b"AUTH=PLAIN", greeting)
        reply = c.say(b"a LOGIN known secret")
        self.assertTrue(reply.startswith(b"a NO [PRIVACYREQUIRED]"), reply)
        reply = c.say(b"b AUTHENTICATE PLAIN AGtub3duAHNlY3JldA==")
        self.assertTrue(reply.startswith(b"b NO [PRIVACYREQUIRED]"), reply)
        c.say(b"c LOGOUT")
        # The log names the client by what is known: a Unix socket behind the proxy.
        harness.wait_for_log(self.proxy.log_path,
                             r"imap session \d+ closed: client=unix via 127\.0\.0\.3:\d+ ", 10)

    def test_proxy_v1_unknown_client_is_not_loopback(self):
        c = Connection(self, self.imap_proxied, "127.0.0.3", b"PROXY UNKNOWN\r\n")
        greeting = c.readline()
        self.assertIn(b"LOGINDISABLED", greeting)
        reply = c.say(b"a LOGIN known secret")
        self.assertTrue(reply.startswith(b"a NO [PRIVACYREQUIRED]"), reply)

    def test_proxy_v2_ip_loopback_client_is_still_loopback(self):
        c = Connection(self, self.imap_proxied, "127.0.0.3", v2_tcp4_header("127.0.0.9"))
        greeting = c.readline()
        self.assertIn(b"AUTH=PLAIN", greeting)
        self.assertNotIn(b"LOGINDISABLED", greeting)

    def test_proxy_v2_unix_client_is_not_loopback_for_pop3(self):
        c = Connection(self, self.pop3_proxied, "127.0.0.3", v2_unix_header())
        self.assertTrue(c.readline().startswith(b"+OK"))
        self.assertTrue(c.say(b"CAPA").startswith(b"+OK"))
        capa = []
        while True:
            line = c.readline()
            self.assertTrue(line, "closed inside CAPA")
            if line == b".\r\n":
                break
            capa.append(line.strip())
        self.assertNotIn(b"USER", capa)
        self.assertFalse(any(line.startswith(b"SASL") for line in capa), capa)
        reply = c.say(b"USER known")
        self.assertTrue(reply.startswith(b"-ERR [AUTH]"), reply)

    def test_failed_logins_of_unix_clients_count_against_the_proxy(self):
        # Loopback is exempt from the penalty by default; the proxy here is 127.0.0.4, but
        # the clients it relays from a Unix socket could be anyone.
        for i in range(BLOCK_AFTER):
            c = Connection(self, self.imap_proxied_open, "127.0.0.4", v2_unix_header())
            greeting = c.readline()
            self.assertIn(b"AUTH=PLAIN", greeting, "allow_plaintext_auth = true")
            reply = c.say(b"a LOGIN nobody-%d wrong" % i)
            self.assertTrue(reply.startswith(b"a NO [AUTHENTICATIONFAILED]"), reply)
        c = Connection(self, self.imap_proxied_open, "127.0.0.4", v2_unix_header())
        self.assertTrue(c.readline().startswith(b"* BYE Too many failed logins"))
        # Not shared: a client with an address behind the same proxy, and the proxy's own
        # address connecting directly (loopback, exempt), are not blocked.
        c = Connection(self, self.imap_proxied_open, "127.0.0.4", v2_tcp4_header("192.0.2.44"))
        self.assertTrue(c.readline().startswith(b"* OK"))
        c = Connection(self, self.imap, "127.0.0.4")
        self.assertTrue(c.readline().startswith(b"* OK"))

    # -- a cancelled AUTHENTICATE / AUTH is a bad command ---------------------------------

    def cancel_until_goodbye(self, c, start, bad_prefix, goodbye):
        for i in range(1, MAX_BAD + 1):
            self.assertEqual(c.say(start(i)), b"+ \r\n", "cancel %d" % i)
            reply = c.say(b"*")
            self.assertTrue(reply.startswith(bad_prefix(i)), reply)
        c.sock.settimeout(5)
        try:
            line = c.readline()
        except socket.timeout:
            self.fail("the session is still open after %d cancels" % MAX_BAD)
        self.assertEqual(line, goodbye)
        self.assertEqual(c.readline(), b"", "closed")

    def test_imap_authenticate_cancel_loop_is_ended(self):
        c = Connection(self, self.imap)
        self.assertTrue(c.readline().startswith(b"* OK"))
        self.cancel_until_goodbye(c, lambda i: b"a%d AUTHENTICATE PLAIN" % i,
                                  lambda i: b"a%d BAD" % i,
                                  b"* BYE Too many invalid commands.\r\n")

    def test_pop3_auth_cancel_loop_is_ended(self):
        c = Connection(self, self.pop3)
        self.assertTrue(c.readline().startswith(b"+OK"))
        self.cancel_until_goodbye(c, lambda i: b"AUTH PLAIN", lambda i: b"-ERR",
                                  b"-ERR Too many invalid commands.\r\n")


if __name__ == "__main__":
    unittest.main()
