"""POP3 through Switchyard to real Dovecot stores: USER/PASS and AUTH PLAIN (with and
without initial response), routing by the map, errors, limits, pop3s and STLS (poplib,
curl, openssl s_client), and XCLIENT forwarding seen in Dovecot's own log.
"""

import base64
import os
import poplib
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Dovecot, Switchyard, make_ca, make_cert, make_sqlite_map, toml_string  # noqa: E402

HOST = "127.0.0.1"


def message(text):
    return ("From: t@example.invalid\r\nSubject: %s\r\n\r\n%s\r\n" % (text, text)).encode()


class Pop3Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-pop3-")
        os.chmod(cls.tmp, 0o755)
        cls.ca = make_ca(os.path.join(cls.tmp, "ca"))
        cls.cert = make_cert(os.path.join(cls.tmp, "certs"), "proxy", cls.ca)
        users = {"paul": "paul-pw", "pia": "pia pw with spaces", "fwd": "fwd-pw",
                 "tls": "tls-pw"}
        cls.store1 = Dovecot("pop1", os.path.join(cls.tmp, "s1"), users=users, tls=cls.cert)
        cls.store2 = Dovecot("pop2", os.path.join(cls.tmp, "s2"), users=users)
        cls.store1.add_message("paul", message("paul on store one"))
        cls.store2.add_message("paul", message("paul on store two"))
        cls.store2.add_message("pia", message("pia on store two"))
        cls.map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"), [
            ("paul", "store1"), ("pia", "store2"), ("fwd", "forwarding"), ("tls", "tlsstore")])
        cls.sleepmap = harness.test_module("sleepmap")
        cls.plain, cls.pop3s = harness.free_ports(2)
        cls.proxy = Switchyard(None, os.path.join(cls.tmp, "proxy"), cls.config())

    @classmethod
    def config(cls):
        return (
            "workers = 1\nmap_dir = %s\n[log]\ntarget = \"stderr\"\nlevel = \"debug\"\n\n"
            "[tls]\ncert = %s\nkey = %s\nca = %s\n\n"
            "[[listen]]\nprotocol = \"pop3\"\naddress = \"127.0.0.1:%d\"\n\n"
            "[[listen]]\nprotocol = \"pop3s\"\naddress = \"127.0.0.1:%d\"\n\n"
            "[[map]]\nmodule = %s\noptions = \"0\"\n\n"
            "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
            "[limits]\nmax_bad_commands = 3\nmax_login_attempts = 2\n\n"
            "[backend.store1]\nhost = \"127.0.0.1\"\npop3 = %d\n\n"
            "[backend.store2]\nhost = \"127.0.0.1\"\npop3 = %d\n\n"
            "[backend.forwarding]\nhost = \"127.0.0.1\"\npop3 = %d\nforward_client_ip = true\n\n"
            "[backend.tlsstore]\nhost = \"localhost\"\npop3 = %d\ntls = \"starttls\"\n"
            % (toml_string(harness.map_dir()), toml_string(cls.cert[0]), toml_string(cls.cert[1]),
               toml_string(cls.ca[0]), cls.plain, cls.pop3s, toml_string(cls.sleepmap),
               toml_string(cls.map_path), cls.store1.pop3_port, cls.store2.pop3_port,
               cls.store1.pop3_port, cls.store1.pop3_port))

    @classmethod
    def tearDownClass(cls):
        for s in (cls.proxy, cls.store1, cls.store2):
            s.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def retrieve_all(self, conn):
        count, _ = conn.stat()
        return [b"\r\n".join(conn.retr(i + 1)[1]) for i in range(count)]

    def test_user_pass_lands_on_the_mapped_store(self):
        conn = poplib.POP3(HOST, self.plain, timeout=20)
        try:
            self.assertIn("Switchyard", conn.getwelcome().decode())
            conn.user("paul")
            conn.pass_("paul-pw")
            bodies = self.retrieve_all(conn)
            self.assertEqual(len(bodies), 1)
            self.assertIn(b"paul on store one", bodies[0])
        finally:
            conn.quit()
        harness.wait_for_log(self.proxy.log_path,
                             r"pop3 login ok: .*user=\"paul\".*backend=store1", 10)

    def test_password_with_spaces_and_capa(self):
        conn = poplib.POP3(HOST, self.plain, timeout=20)
        try:
            caps = conn.capa()
            self.assertIn("USER", caps)
            self.assertIn("STLS", caps)
            self.assertEqual(caps.get("SASL"), ["PLAIN", "LOGIN"])
            for cap in ("TOP", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"):
                self.assertIn(cap, caps)
            conn.user("pia")
            conn.pass_("pia pw with spaces")
            self.assertIn(b"pia on store two", self.retrieve_all(conn)[0])
        finally:
            conn.quit()

    def raw(self, port=None):
        s = socket.create_connection((HOST, port or self.plain), timeout=10)
        self.addCleanup(s.close)
        f = s.makefile("rwb")
        self.assertTrue(f.readline().startswith(b"+OK"))
        return s, f

    def say(self, f, line):
        f.write(line + b"\r\n")
        f.flush()
        return f.readline()

    def test_auth_plain_with_and_without_initial_response(self):
        token = base64.b64encode(b"\0paul\0paul-pw")
        s, f = self.raw()
        self.assertTrue(self.say(f, b"AUTH PLAIN " + token).startswith(b"+OK"))
        self.assertTrue(self.say(f, b"STAT").startswith(b"+OK 1 "))
        s, f = self.raw()
        self.assertEqual(self.say(f, b"AUTH PLAIN").strip(), b"+")
        self.assertTrue(self.say(f, token).startswith(b"+OK"))
        s, f = self.raw()
        self.assertEqual(self.say(f, b"AUTH PLAIN").strip(), b"+")
        self.assertTrue(self.say(f, b"*").startswith(b"-ERR"))
        self.assertTrue(self.say(f, b"NOOP").startswith(b"+OK"), "cancel leaves the session")

    def test_errors_wrong_password_unknown_user_tempfail(self):
        s, f = self.raw()
        self.say(f, b"USER paul")
        self.assertTrue(self.say(f, b"PASS wrong").startswith(b"-ERR [AUTH]"))
        s, f = self.raw()
        self.say(f, b"USER nobody-knows-me")
        self.assertEqual(self.say(f, b"PASS x"), b"-ERR [AUTH] Authentication failed.\r\n")
        s, f = self.raw()
        self.say(f, b"USER tempfail")
        self.assertTrue(self.say(f, b"PASS x").startswith(b"-ERR [SYS/TEMP]"))
        self.assertNotIn("paul-pw", self.proxy.log_text())

    def test_limits_bad_commands_attempts_line_length_apop(self):
        s, f = self.raw()
        self.assertTrue(self.say(f, b"APOP paul 0123456789abcdef").startswith(b"-ERR"))
        self.assertTrue(self.say(f, b"RETR 1").startswith(b"-ERR"))
        self.assertTrue(self.say(f, b"PASS before-user").startswith(b"-ERR"))
        self.assertTrue(f.readline().startswith(b"-ERR Too many invalid commands"))
        self.assertEqual(f.readline(), b"", "closed after three bad commands")
        s, f = self.raw()
        for _ in range(2):
            self.say(f, b"USER paul")
            self.assertTrue(self.say(f, b"PASS wrong").startswith(b"-ERR"))
        self.assertTrue(f.readline().startswith(b"-ERR Too many login failures"))
        self.assertEqual(f.readline(), b"", "closed after max_login_attempts")
        # Past max_line_length (64 KB by default) -ERR, and the session goes on.
        s, f = self.raw()
        f.write(b"USER " + b"x" * 70000 + b"\r\n")
        f.flush()
        self.assertEqual(f.readline(), b"-ERR line too long\r\n")
        self.say(f, b"USER paul")
        self.assertTrue(self.say(f, b"PASS paul-pw").startswith(b"+OK"))

    def test_pop3s_with_poplib_and_curl(self):
        ctx = ssl.create_default_context(cafile=self.ca[0])
        conn = poplib.POP3_SSL("localhost", self.pop3s, context=ctx, timeout=20)
        try:
            conn.user("paul")
            conn.pass_("paul-pw")
            self.assertEqual(conn.stat()[0], 1)
        finally:
            conn.quit()
        r = subprocess.run(["curl", "-sS", "--cacert", self.ca[0],
                            "pop3s://localhost:%d/1" % self.pop3s, "-u", "pia:pia pw with spaces"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"pia on store two", r.stdout)

    def test_curl_pop3_lists_messages(self):
        r = subprocess.run(["curl", "-sS", "pop3://127.0.0.1:%d/" % self.plain, "-u",
                            "paul:paul-pw"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, rb"^1 \d+")

    def test_stls_with_poplib_and_s_client_and_injection(self):
        ctx = ssl.create_default_context(cafile=self.ca[0])
        conn = poplib.POP3("localhost", self.plain, timeout=20)
        try:
            conn.stls(context=ctx)
            self.assertNotIn("STLS", conn.capa())
            conn.user("paul")
            conn.pass_("paul-pw")
            self.assertEqual(conn.stat()[0], 1)
        finally:
            conn.quit()
        r = subprocess.run(["openssl", "s_client", "-starttls", "pop3", "-connect",
                            "127.0.0.1:%d" % self.plain, "-CAfile", self.ca[0],
                            "-verify_hostname", "localhost", "-verify_return_error", "-quiet"],
                           input=b"USER paul\r\nPASS paul-pw\r\nSTAT\r\nQUIT\r\n",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertIn(b"+OK 1 ", r.stdout, r.stderr)
        # Commands pipelined after STLS in plaintext are dropped.
        s, f = self.raw()
        s.sendall(b"STLS\r\nUSER paul\r\nPASS paul-pw\r\n")
        self.assertTrue(f.readline().startswith(b"+OK"))
        t = ctx.wrap_socket(s, server_hostname="localhost")
        t.sendall(b"STAT\r\n")
        self.assertTrue(t.recv(200).startswith(b"-ERR"), "not logged in by injected commands")
        t.close()

    def test_store_over_stls_and_xclient_forwarding(self):
        conn = poplib.POP3(HOST, self.plain, timeout=20)
        try:
            conn.user("tls")
            conn.pass_("tls-pw")
        finally:
            conn.quit()
        harness.wait_for_log(self.store1.log_path, r"pop3-login: Info: Login: user=<tls>.*, TLS,", 10)
        start = len(self.store1.log_text())
        s = socket.socket()
        self.addCleanup(s.close)
        s.settimeout(10)
        s.bind(("127.0.0.33", 0))
        s.connect((HOST, self.plain))
        f = s.makefile("rwb")
        f.readline()
        self.say(f, b"USER fwd")
        self.assertTrue(self.say(f, b"PASS fwd-pw").startswith(b"+OK"))
        m = harness.wait_for_log(self.store1.log_path, r"Login: user=<fwd>.*rip=(\S+?),", 10, start)
        self.assertEqual(m.group(1), "127.0.0.33")


if __name__ == "__main__":
    unittest.main()
