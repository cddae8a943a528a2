"""SASL LOGIN, POP3 CAPA before login and the pre-login limits, against a real Dovecot.

- curl --login-options AUTH=LOGIN logs in over IMAP and POP3 through Switchyard, as it does
  directly against the store; AUTHENTICATE LOGIN / AUTH LOGIN with and without an initial
  response and cancelled with "*", over raw sockets.
- LOGIN falls under the plaintext rules: a remote client (simulated by a PROXY header from
  a trusted proxy) on a plain listener sees neither AUTH=LOGIN nor SASL LOGIN and is
  refused, unless allow_plaintext_auth says otherwise or TLS is on.
- POP3 CAPA before login announces what the store offers after login (compared with the
  store's own pre-login CAPA), per listener configurable; pipelined CAPA+USER+PASS work.
- A 32 KB RFC 2971 ID is answered and forwarded; a LOGIN with 1 KB name and password
  reaches the store; a line over the limit is answered BAD / -ERR and the session goes on.
"""

import base64
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Dovecot, LineClient, Switchyard, make_ca, make_cert,  # noqa: E402
                     make_sqlite_map, toml_string)

HOST = "127.0.0.1"
USER_PROMPT = b"+ VXNlcm5hbWU6\r\n"      # "Username:"
PASSWORD_PROMPT = b"+ UGFzc3dvcmQ6\r\n"  # "Password:"

# A name that still fits a maildir path component (the store's home is mail/<user>).
LONG_USER = "long-" + "u" * 240
KILOBYTE_PASSWORD = "p%" + "x" * 1019 + " ok"
assert len(KILOBYTE_PASSWORD) == 1024
USERS = {"sam": "sam-pw", "fwd": "fwd-pw", LONG_USER: KILOBYTE_PASSWORD}


def b64(text):
    return base64.b64encode(text.encode()) if isinstance(text, str) else base64.b64encode(text)


def message(text):
    return ("From: t@example.invalid\r\nSubject: %s\r\n\r\n%s\r\n" % (text, text)).encode()


def largest_id(tag=b"i"):
    """An RFC 2971 ID at its limits: 30 pairs, 30-octet fields, 1024-octet values."""
    pairs = []
    for i in range(30):
        field = ("field-%02d" % i).ljust(30, "f")
        value = ("value-%02d-" % i).ljust(1024, "v")
        pairs.append('"%s" "%s"' % (field, value))
    return tag + b" ID (" + " ".join(pairs).encode() + b")\r\n"


def read_multiline(f):
    """A POP3 multi-line answer after its +OK line: the lines without CRLF, dot-unstuffed."""
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise EOFError("closed inside a multi-line answer: %r" % lines)
        line = line.rstrip(b"\r\n")
        if line == b".":
            return lines
        lines.append(line[1:] if line.startswith(b"..") else line)


class SaslLoginTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-sasl-")
        os.chmod(cls.tmp, 0o755)
        cls.ca = make_ca(os.path.join(cls.tmp, "ca"))
        cls.cert = make_cert(os.path.join(cls.tmp, "certs"), "proxy", cls.ca)
        cls.store = Dovecot("sasl", os.path.join(cls.tmp, "store"), users=USERS, tls=cls.cert,
                            extra_conf="imap_id_log = *\n")
        cls.store.add_message("sam", message("sam's first"))
        cls.store.add_message("sam", message("sam's second"))
        cls.map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"),
                                       [("sam", "store"), ("fwd", "forwarding"),
                                        (LONG_USER, "store")])
        (cls.imap, cls.pop3, cls.imap_remote, cls.pop3_remote, cls.imap_open,
         cls.pop3_custom) = harness.free_ports(6)
        remote = "proxy_protocol = true\ntrusted_proxies = [\"127.0.0.0/8\"]\n"
        config = (
            "workers = 1\nmap_dir = %s\n[log]\ntarget = \"stderr\"\nlevel = \"debug\"\n\n"
            "[tls]\ncert = %s\nkey = %s\nca = %s\n\n"
            "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:%d\"\n\n"
            "[[listen]]\nprotocol = \"pop3\"\naddress = \"127.0.0.1:%d\"\n\n"
            "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:%d\"\n%s\n"
            "[[listen]]\nprotocol = \"pop3\"\naddress = \"127.0.0.1:%d\"\n%s\n"
            "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:%d\"\n%s"
            "allow_plaintext_auth = true\n\n"
            "[[listen]]\nprotocol = \"pop3\"\naddress = \"127.0.0.1:%d\"\n"
            "pop3_capabilities = [\"TOP\", \"USER\", \"UIDL\", \"EXPIRE NEVER\"]\n\n"
            "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
            "[lookup]\nfallback = \"store\"\n\n"
            "[limits]\nmax_bad_commands = 5\n\n"
            "[backend.store]\nhost = \"127.0.0.1\"\nimap = %d\npop3 = %d\n\n"
            "[backend.forwarding]\nhost = \"127.0.0.1\"\nimap = %d\npop3 = %d\n"
            "forward_client_ip = true\n"
            % (toml_string(harness.map_dir()), toml_string(cls.cert[0]),
               toml_string(cls.cert[1]), toml_string(cls.ca[0]), cls.imap, cls.pop3,
               cls.imap_remote, remote, cls.pop3_remote, remote, cls.imap_open, remote,
               cls.pop3_custom, toml_string(cls.map_path), cls.store.imap_port,
               cls.store.pop3_port, cls.store.imap_port, cls.store.pop3_port))
        cls.proxy = Switchyard(None, os.path.join(cls.tmp, "proxy"), config)

    @classmethod
    def tearDownClass(cls):
        for s in (cls.proxy, cls.store):
            s.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------

    def imap_client(self, port=None, header=b""):
        c = LineClient(HOST, port or self.imap)
        self.addCleanup(c.close)
        if header:
            c.send(header)
        greeting = c.readline()
        self.assertTrue(greeting.startswith(b"* OK"), greeting)
        return c, greeting

    def pop3_client(self, port=None, header=b""):
        s = socket.create_connection((HOST, port or self.pop3), timeout=10)
        self.addCleanup(s.close)
        if header:
            s.sendall(header)
        f = s.makefile("rwb")
        greeting = f.readline()
        self.assertTrue(greeting.startswith(b"+OK"), greeting)
        return s, f

    @staticmethod
    def say(f, line):
        f.write(line + b"\r\n")
        f.flush()
        return f.readline()

    def capa(self, f):
        self.assertTrue(self.say(f, b"CAPA").startswith(b"+OK"))
        return read_multiline(f)

    @staticmethod
    def remote_header(n):
        return b"PROXY TCP4 192.0.2.%d 127.0.0.1 4%04d 143\r\n" % (n, n)

    def curl(self, url, *extra):
        return subprocess.run(["curl", "-sS", "-v", "--login-options", "AUTH=LOGIN", url,
                               "-u", "sam:sam-pw"] + list(extra),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)

    # -- curl, directly and through Switchyard ----------------------------------

    def test_curl_imap_auth_login_directly_and_through_switchyard(self):
        results = {}
        for name, port in (("direct", self.store.imap_port), ("switchyard", self.imap)):
            r = self.curl("imap://127.0.0.1:%d/INBOX;UID=2" % port)
            self.assertEqual(r.returncode, 0, (name, r.stderr[-2000:]))
            self.assertIn(b"AUTHENTICATE LOGIN", r.stderr, name)
            self.assertIn(b"sam's second", r.stdout, name)
            results[name] = r.stdout
        self.assertEqual(results["direct"], results["switchyard"])
        harness.wait_for_log(self.proxy.log_path, r'imap login ok: .*user="sam"', 10)

    def test_curl_pop3_auth_login_directly_and_through_switchyard(self):
        results = {}
        for name, port in (("direct", self.store.pop3_port), ("switchyard", self.pop3)):
            r = self.curl("pop3://127.0.0.1:%d/1" % port)
            self.assertEqual(r.returncode, 0, (name, r.stderr[-2000:]))
            self.assertIn(b"AUTH LOGIN", r.stderr, name)
            self.assertIn(b"sam's first", r.stdout, name)
            results[name] = r.stdout
        self.assertEqual(results["direct"], results["switchyard"])
        harness.wait_for_log(self.proxy.log_path, r'pop3 login ok: .*user="sam"', 10)

    # -- IMAP AUTHENTICATE LOGIN --------------------------------------------------

    def test_imap_capabilities_offer_auth_login(self):
        c, greeting = self.imap_client()
        self.assertIn(b" AUTH=PLAIN AUTH=LOGIN", greeting)
        untagged, tagged = c.command("c", "CAPABILITY")
        self.assertTrue(tagged.startswith(b"c OK"), tagged)
        self.assertIn(b" AUTH=LOGIN", b"".join(untagged))

    def test_imap_authenticate_login_without_initial_response(self):
        c, _ = self.imap_client()
        c.send(b"a AUTHENTICATE LOGIN\r\n")
        self.assertEqual(c.readline(), USER_PROMPT)
        c.send(b64("sam") + b"\r\n")
        self.assertEqual(c.readline(), PASSWORD_PROMPT)
        c.send(b64("sam-pw") + b"\r\n")
        _, tagged = c.read_until_tagged("a")
        # The store's own answer, with its post-login capabilities.
        self.assertRegex(tagged, rb"^a OK \[CAPABILITY IMAP4rev1 .*IDLE")
        _, tagged = c.command("s", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"s OK"), tagged)

    def test_imap_authenticate_login_with_sasl_ir(self):
        c, _ = self.imap_client()
        c.send(b"a AUTHENTICATE LOGIN " + b64("sam") + b"\r\n")
        self.assertEqual(c.readline(), PASSWORD_PROMPT)
        c.send(b64("sam-pw") + b"\r\n")
        _, tagged = c.read_until_tagged("a")
        self.assertTrue(tagged.startswith(b"a OK [CAPABILITY"), tagged)
        untagged, tagged = c.command("s", "STATUS INBOX (MESSAGES)")
        self.assertIn(b"MESSAGES 2", b"".join(untagged))

    def test_imap_authenticate_login_cancel_and_wrong_password(self):
        c, _ = self.imap_client()
        c.send(b"a AUTHENTICATE LOGIN\r\n")
        self.assertEqual(c.readline(), USER_PROMPT)
        c.send(b"*\r\n")
        self.assertTrue(c.readline().startswith(b"a BAD"))
        c.send(b"b AUTHENTICATE LOGIN " + b64("sam") + b"\r\n")
        self.assertEqual(c.readline(), PASSWORD_PROMPT)
        c.send(b"*\r\n")
        self.assertTrue(c.readline().startswith(b"b BAD"))
        _, tagged = c.command("n", "NOOP")
        self.assertTrue(tagged.startswith(b"n OK"), "the session goes on after a cancel")
        c.send(b"w AUTHENTICATE LOGIN " + b64("sam") + b"\r\n")
        self.assertEqual(c.readline(), PASSWORD_PROMPT)
        c.send(b64("not-the-password") + b"\r\n")
        _, tagged = c.read_until_tagged("w")
        self.assertTrue(tagged.startswith(b"w NO [AUTHENTICATIONFAILED]"), tagged)
        c.send(b"x AUTHENTICATE LOGIN\r\n")
        self.assertEqual(c.readline(), USER_PROMPT)
        c.send(b"not base64!\r\n")
        self.assertTrue(c.readline().startswith(b"x BAD Invalid SASL LOGIN response"))
        c.send(b"ok AUTHENTICATE LOGIN " + b64("sam") + b"\r\n")
        self.assertEqual(c.readline(), PASSWORD_PROMPT)
        c.send(b64("sam-pw") + b"\r\n")
        _, tagged = c.read_until_tagged("ok")
        self.assertTrue(tagged.startswith(b"ok OK"), tagged)
        self.assertNotIn("sam-pw", self.proxy.log_text())

    # -- POP3 AUTH LOGIN ----------------------------------------------------------

    def test_pop3_auth_login_without_and_with_initial_response(self):
        s, f = self.pop3_client()
        self.assertEqual(self.say(f, b"AUTH LOGIN"), USER_PROMPT)
        self.assertEqual(self.say(f, b64("sam")), PASSWORD_PROMPT)
        self.assertTrue(self.say(f, b64("sam-pw")).startswith(b"+OK"))
        self.assertTrue(self.say(f, b"STAT").startswith(b"+OK 2 "))
        s, f = self.pop3_client()
        self.assertEqual(self.say(f, b"AUTH LOGIN " + b64("sam")), PASSWORD_PROMPT)
        self.assertTrue(self.say(f, b64("sam-pw")).startswith(b"+OK"))
        self.assertTrue(self.say(f, b"STAT").startswith(b"+OK 2 "))

    def test_pop3_auth_login_cancel_and_listing(self):
        s, f = self.pop3_client()
        self.assertEqual(self.say(f, b"AUTH"), b"+OK\r\n")
        self.assertEqual(read_multiline(f), [b"PLAIN", b"LOGIN"])
        self.assertEqual(self.say(f, b"AUTH LOGIN"), USER_PROMPT)
        self.assertTrue(self.say(f, b"*").startswith(b"-ERR"))
        self.assertEqual(self.say(f, b"AUTH LOGIN " + b64("sam")), PASSWORD_PROMPT)
        self.assertTrue(self.say(f, b"*").startswith(b"-ERR"))
        self.assertTrue(self.say(f, b"NOOP").startswith(b"+OK"), "cancel leaves the session")
        self.assertEqual(self.say(f, b"AUTH LOGIN " + b64("sam")), PASSWORD_PROMPT)
        self.assertTrue(self.say(f, b64("wrong")).startswith(b"-ERR [AUTH]"))
        self.assertEqual(self.say(f, b"AUTH LOGIN"), USER_PROMPT)
        self.assertEqual(self.say(f, b64("sam")), PASSWORD_PROMPT)
        self.assertTrue(self.say(f, b64("sam-pw")).startswith(b"+OK"))

    # -- plaintext rules ----------------------------------------------------------

    def test_remote_plain_imap_client_is_not_offered_login(self):
        c, greeting = self.imap_client(self.imap_remote, self.remote_header(7))
        self.assertIn(b"LOGINDISABLED", greeting)
        self.assertNotIn(b"AUTH=", greeting)
        _, tagged = c.command("a", "AUTHENTICATE LOGIN")
        self.assertTrue(tagged.startswith(b"a NO [PRIVACYREQUIRED]"), tagged)
        _, tagged = c.command("b", "AUTHENTICATE LOGIN " + b64("sam").decode())
        self.assertTrue(tagged.startswith(b"b NO [PRIVACYREQUIRED]"), tagged)
        # After STARTTLS it is offered and works.
        _, tagged = c.command("t", "STARTTLS")
        self.assertTrue(tagged.startswith(b"t OK"), tagged)
        ctx = ssl.create_default_context(cafile=self.ca[0])
        c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")
        untagged, _ = c.command("c", "CAPABILITY")
        self.assertIn(b" AUTH=LOGIN", b"".join(untagged))
        c.send(b"l AUTHENTICATE LOGIN\r\n")
        self.assertEqual(c.readline(), USER_PROMPT)
        c.send(b64("sam") + b"\r\n")
        self.assertEqual(c.readline(), PASSWORD_PROMPT)
        c.send(b64("sam-pw") + b"\r\n")
        _, tagged = c.read_until_tagged("l")
        self.assertTrue(tagged.startswith(b"l OK"), tagged)
        harness.wait_for_log(self.proxy.log_path,
                             r'imap login ok: .*client=192\.0\.2\.7:.*user="sam"', 10)

    def test_remote_client_with_allow_plaintext_auth_may_use_login(self):
        c, greeting = self.imap_client(self.imap_open, self.remote_header(8))
        self.assertIn(b"AUTH=LOGIN", greeting)
        c.send(b"a AUTHENTICATE LOGIN " + b64("sam") + b"\r\n")
        self.assertEqual(c.readline(), PASSWORD_PROMPT)
        c.send(b64("sam-pw") + b"\r\n")
        _, tagged = c.read_until_tagged("a")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)

    def test_remote_plain_pop3_client_is_not_offered_login(self):
        s, f = self.pop3_client(self.pop3_remote, self.remote_header(9))
        caps = self.capa(f)
        self.assertFalse([c for c in caps if c.startswith((b"SASL", b"USER"))], caps)
        self.assertIn(b"STLS", caps)
        self.assertIn(b"UIDL", caps)
        self.assertEqual(self.say(f, b"AUTH"), b"+OK\r\n")
        self.assertEqual(read_multiline(f), [], "no mechanism is listed")
        self.assertTrue(self.say(f, b"AUTH LOGIN").startswith(b"-ERR [AUTH]"))
        self.assertTrue(self.say(f, b"AUTH LOGIN " + b64("sam")).startswith(b"-ERR [AUTH]"))
        self.assertTrue(self.say(f, b"STLS").startswith(b"+OK"))
        ctx = ssl.create_default_context(cafile=self.ca[0])
        t = ctx.wrap_socket(s, server_hostname="localhost")
        f = t.makefile("rwb")
        caps = self.capa(f)
        self.assertIn(b"SASL PLAIN LOGIN", caps)
        self.assertNotIn(b"STLS", caps)
        self.assertEqual(self.say(f, b"AUTH LOGIN"), USER_PROMPT)
        self.assertEqual(self.say(f, b64("sam")), PASSWORD_PROMPT)
        self.assertTrue(self.say(f, b64("sam-pw")).startswith(b"+OK"))
        t.close()

    # -- POP3 CAPA before login ---------------------------------------------------

    def test_pop3_capa_before_login_matches_the_store(self):
        s, f = self.pop3_client(self.store.pop3_port)
        direct = set(self.capa(f))
        s, f = self.pop3_client()
        caps = self.capa(f)
        for wanted in (b"TOP", b"UIDL", b"RESP-CODES", b"PIPELINING", b"AUTH-RESP-CODE",
                       b"USER", b"SASL PLAIN LOGIN", b"STLS"):
            self.assertIn(wanted, caps)
        self.assertIn(b"IMPLEMENTATION Switchyard", caps)
        # Everything the store announces, Switchyard announces (CAPA itself aside).
        self.assertEqual(direct - set(caps) - {b"CAPA"}, set(), (direct, caps))

    def test_pop3_capabilities_configured_per_listener(self):
        s, f = self.pop3_client(self.pop3_custom)
        self.assertEqual(self.capa(f), [b"TOP", b"USER", b"UIDL", b"EXPIRE NEVER",
                                        b"IMPLEMENTATION Switchyard"])

    def test_pop3_pipelined_capa_user_pass_in_one_write(self):
        s, f = self.pop3_client()
        s.sendall(b"CAPA\r\nUSER sam\r\nPASS sam-pw\r\nSTAT\r\nUIDL\r\nQUIT\r\n")
        self.assertTrue(f.readline().startswith(b"+OK"))
        self.assertIn(b"PIPELINING", read_multiline(f))
        self.assertTrue(f.readline().startswith(b"+OK"), "USER")
        self.assertTrue(f.readline().startswith(b"+OK"), "PASS: logged in")
        self.assertTrue(f.readline().startswith(b"+OK 2 "), "STAT from the store")
        self.assertTrue(f.readline().startswith(b"+OK"))
        self.assertEqual(len(read_multiline(f)), 2, "UIDL lists both messages")
        self.assertTrue(f.readline().startswith(b"+OK"), "QUIT")

    # -- limits -------------------------------------------------------------------

    def test_largest_id_is_answered_and_forwarded(self):
        start = len(self.store.log_text())
        c, _ = self.imap_client()
        c.send(largest_id(b"i"))
        untagged, tagged = c.read_until_tagged("i")
        self.assertTrue(tagged.startswith(b"i OK"), tagged)
        self.assertTrue(any(u.startswith(b"* ID ") for u in untagged), untagged)
        _, tagged = c.command("a", "LOGIN fwd fwd-pw")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        _, tagged = c.command("n", "NOOP")
        self.assertTrue(tagged.startswith(b"n OK"), tagged)
        # Dovecot logs the ID it received (imap_id_log): the client's fields reached it.
        log = harness.wait_for_log(self.store.log_path, r"ID sent: .*", 10, start).group(0)
        self.assertIn("field-00", log)
        self.assertIn("x-session-id", log)
        record = harness.wait_for_log(self.proxy.log_path,
                                      r'imap login ok: .*user="fwd".* id="([^"]*)"', 10)
        self.assertLessEqual(len(record.group(1)), 256 + 3, "the log keeps the ID short")
        self.assertTrue(record.group(1).startswith("field-00"), record.group(1))

    def test_kilobyte_name_and_password(self):
        # A kilobyte password logs in (the name is as long as the store's maildir allows).
        c, _ = self.imap_client()
        _, tagged = c.command("a", 'LOGIN "%s" "%s"' % (LONG_USER, KILOBYTE_PASSWORD))
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        s, f = self.pop3_client()
        self.assertTrue(self.say(f, b"USER " + LONG_USER.encode()).startswith(b"+OK"))
        self.assertTrue(self.say(f, b"PASS " + KILOBYTE_PASSWORD.encode()).startswith(b"+OK"))
        # A kilobyte name reaches the store (through the fallback back end), as a literal
        # and through AUTHENTICATE LOGIN alike; the store refuses it.
        name = "n" * 1024
        c, _ = self.imap_client()
        c.send(b"a LOGIN {1024}\r\n")
        self.assertTrue(c.readline().startswith(b"+"))
        c.send(name.encode() + b" {1024+}\r\n" + KILOBYTE_PASSWORD.encode() + b"\r\n")
        _, tagged = c.read_until_tagged("a")
        self.assertTrue(tagged.startswith(b"a NO"), tagged)
        c.send(b"b AUTHENTICATE LOGIN " + b64(name) + b"\r\n")
        self.assertEqual(c.readline(), PASSWORD_PROMPT)
        c.send(b64(KILOBYTE_PASSWORD) + b"\r\n")
        _, tagged = c.read_until_tagged("b")
        self.assertTrue(tagged.startswith(b"b NO"), tagged)
        def store_refusals():
            return len([line for line in self.proxy.log_text().splitlines()
                        if "imap login failed" in line and 'user="%s' % name[:200] in line
                        and "result=failed" in line]) >= 2
        harness.wait_until(store_refusals, 10, "two refusals by the store")

    def test_over_limit_line_gets_bad_and_the_session_goes_on(self):
        c, _ = self.imap_client()
        c.send(b"a NOOP " + b"x" * 70000 + b"\r\n")
        _, tagged = c.read_until_tagged("a")
        self.assertEqual(tagged, b"a BAD line too long\r\n")
        c.send(b"b AUTHENTICATE LOGIN\r\n")
        self.assertEqual(c.readline(), USER_PROMPT)
        c.send(b"A" * 70000 + b"\r\n")
        self.assertEqual(c.readline(), b"b BAD line too long\r\n")
        _, tagged = c.command("l", "LOGIN sam sam-pw")
        self.assertTrue(tagged.startswith(b"l OK"), tagged)
        s, f = self.pop3_client()
        self.assertEqual(self.say(f, b"USER " + b"x" * 70000), b"-ERR line too long\r\n")
        self.assertTrue(self.say(f, b"USER sam").startswith(b"+OK"))
        self.assertTrue(self.say(f, b"PASS sam-pw").startswith(b"+OK"))


if __name__ == "__main__":
    unittest.main()
