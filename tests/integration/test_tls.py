"""TLS on every leg: imaps and STARTTLS towards clients (with LOGINDISABLED before TLS and
the STARTTLS command-injection case), implicit TLS and STARTTLS towards the stores, with
certificate verification. Certificates come from a CA made here; stores are real Dovecot.
"""

import imaplib
import warnings
import os
import shutil
import signal
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
MESSAGE = (b"From: t@example.invalid\r\nSubject: over TLS\r\n\r\nsecret body\r\n")


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-tls-")
        os.chmod(cls.tmp, 0o755)
        cls.ca = make_ca(os.path.join(cls.tmp, "ca"))
        cls.other_ca = make_ca(os.path.join(cls.tmp, "other-ca"), "Untrusted CA")
        certs = os.path.join(cls.tmp, "certs")
        cls.proxy_cert = make_cert(certs, "proxy", cls.ca)
        cls.store_cert = make_cert(certs, "store", cls.ca)
        cls.bad_store_cert = make_cert(certs, "badstore", cls.other_ca)
        cls.store = Dovecot("tlsstore", os.path.join(cls.tmp, "store"),
                            users={"tina": "tina-pw", "ivy": "ivy-pw", "stan": "stan-pw"},
                            tls=cls.store_cert)
        cls.badstore = Dovecot("badstore", os.path.join(cls.tmp, "badstore"),
                               users={"bad": "bad-pw", "lax": "lax-pw"}, tls=cls.bad_store_cert)
        cls.store.add_message("tina", MESSAGE)
        cls.map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"), [
            ("tina", "plainstore"), ("ivy", "implicitstore"), ("stan", "starttlsstore"),
            ("bad", "badstore"), ("lax", "laxstore")])
        cls.ctx = ssl.create_default_context(cafile=cls.ca[0])

    @classmethod
    def tearDownClass(cls):
        for s in (cls.store, cls.badstore):
            s.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def config(self, plain_port, imaps_port, allow_plaintext=None):
        allow = ("allow_plaintext_auth = %s\n" % ("true" if allow_plaintext else "false")
                 if allow_plaintext is not None else "")

        def backend(name, port, tls, host="127.0.0.1", verify=True):
            return ('[backend.%s]\nhost = "%s"\nimap = %d\ntls = "%s"\ntls_verify = %s\n\n'
                    % (name, host, port, tls, "true" if verify else "false"))
        return (
            "workers = 1\nmap_dir = %s\n[log]\ntarget = \"stderr\"\nlevel = \"debug\"\n\n"
            "[tls]\ncert = %s\nkey = %s\nca = %s\n\n"
            "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:%d\"\n%s\n"
            "[[listen]]\nprotocol = \"imaps\"\naddress = \"127.0.0.1:%d\"\n\n"
            "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
            % (toml_string(harness.map_dir()), toml_string(self.proxy_cert[0]),
               toml_string(self.proxy_cert[1]), toml_string(self.ca[0]), plain_port, allow,
               imaps_port, toml_string(self.map_path))
            + backend("plainstore", self.store.imap_port, "none")
            + backend("implicitstore", self.store.imaps_port, "implicit")
            + backend("starttlsstore", self.store.imap_port, "starttls", host="localhost")
            + backend("badstore", self.badstore.imaps_port, "implicit")
            + backend("laxstore", self.badstore.imaps_port, "implicit", verify=False))

    def proxy(self, name, allow_plaintext=None):
        plain, imaps = harness.free_ports(2)
        p = Switchyard(None, os.path.join(self.tmp, name),
                       self.config(plain, imaps, allow_plaintext))
        self.addCleanup(p.stop)
        return p, plain, imaps

    # -- towards the client ---------------------------------------------------

    def test_imaps_with_imaplib_and_verified_certificate(self):
        p, _, imaps = self.proxy("imaps")
        conn = imaplib.IMAP4_SSL("localhost", imaps, ssl_context=self.ctx, timeout=20)
        try:
            self.assertIn("AUTH=PLAIN", conn.capabilities)
            self.assertNotIn("STARTTLS", conn.capabilities)
            conn.login("tina", "tina-pw")
            typ, data = conn.select("INBOX", readonly=True)
            self.assertEqual(typ, "OK")
            typ, data = conn.fetch("1", "(BODY.PEEK[])")
            self.assertEqual(data[0][1], MESSAGE)
        finally:
            conn.logout()

    def test_imaps_with_curl(self):
        p, _, imaps = self.proxy("curl-imaps")
        r = subprocess.run(["curl", "-sS", "--cacert", self.ca[0],
                            "imaps://localhost:%d/INBOX;UID=1" % imaps, "-u", "tina:tina-pw"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, MESSAGE)

    def test_tls_1_1_is_refused_by_default(self):
        warnings.simplefilter("ignore", DeprecationWarning)
        p, _, imaps = self.proxy("old-tls")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1  # deprecated, which is the point
        try:
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        except ssl.SSLError:
            pass
        with socket.create_connection((HOST, imaps), timeout=10) as raw:
            with self.assertRaises((ssl.SSLError, ConnectionResetError)):
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    s.recv(100)

    def test_logindisabled_until_starttls_then_login(self):
        p, plain, _ = self.proxy("starttls", allow_plaintext=False)
        conn = imaplib.IMAP4(HOST, plain, timeout=20)
        try:
            self.assertIn("LOGINDISABLED", conn.capabilities)
            self.assertIn("STARTTLS", conn.capabilities)
            self.assertNotIn("AUTH=PLAIN", conn.capabilities)
            typ, data = conn._simple_command("LOGIN", "tina", "tina-pw")
            self.assertEqual(typ, "NO")
            self.assertIn(b"PRIVACYREQUIRED", data[0])
            conn.starttls(ssl_context=self.ctx)
            self.assertIn("AUTH=PLAIN", conn.capabilities)
            self.assertNotIn("STARTTLS", conn.capabilities)
            conn.login("tina", "tina-pw")
            self.assertEqual(conn.select("INBOX", readonly=True)[0], "OK")
        finally:
            conn.logout()
        self.assertNotIn("tina-pw", p.log_text())

    def test_openssl_s_client_starttls_imap(self):
        p, plain, _ = self.proxy("s_client", allow_plaintext=False)
        r = subprocess.run(["openssl", "s_client", "-starttls", "imap", "-connect",
                            "127.0.0.1:%d" % plain, "-CAfile", self.ca[0],
                            "-verify_hostname", "localhost", "-verify_return_error", "-quiet"],
                           input=b"a LOGIN tina tina-pw\r\nb LOGOUT\r\n",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertIn(b"a OK", r.stdout, r.stderr)
        self.assertIn(b"b OK", r.stdout)

    def test_starttls_command_injection_is_discarded(self):
        p, plain, _ = self.proxy("injection", allow_plaintext=False)
        raw = socket.create_connection((HOST, plain), timeout=10)
        self.addCleanup(raw.close)
        f = raw.makefile("rb")
        self.assertTrue(f.readline().startswith(b"* OK"))
        # The classic attack: commands pipelined behind STARTTLS in the same packet.
        raw.sendall(b"a STARTTLS\r\nb LOGIN tina tina-pw\r\nc NOOP\r\n")
        self.assertTrue(f.readline().startswith(b"a OK"))
        tls = self.ctx.wrap_socket(raw, server_hostname="localhost")
        tls.sendall(b"d NOOP\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = tls.recv(4096)
            self.assertTrue(chunk, "connection closed")
            reply += chunk
        self.assertTrue(reply.startswith(b"d OK"), reply)
        self.assertNotIn(b"b ", reply)
        self.assertNotRegex(p.log_text(), r"imap login .*user=\"tina\"")
        tls.close()

    # -- towards the store ------------------------------------------------------

    def login(self, port, user, password):
        c = LineClient(HOST, port)
        try:
            c.readline()
            return c.command("a", "LOGIN %s %s" % (user, password))[1]
        finally:
            c.close()

    def test_store_with_implicit_tls_and_starttls(self):
        p, plain, _ = self.proxy("store-tls")
        self.assertTrue(self.login(plain, "ivy", "ivy-pw").startswith(b"a OK"))
        self.assertTrue(self.login(plain, "stan", "stan-pw").startswith(b"a OK"))
        # Dovecot marks a login over TLS with "TLS" (a plain loopback one says "secured").
        harness.wait_for_log(self.store.log_path, r"imap-login: Info: Login: user=<ivy>.*, TLS,", 10)
        harness.wait_for_log(self.store.log_path, r"imap-login: Info: Login: user=<stan>.*, TLS,", 10)

    def test_store_certificate_that_does_not_verify_refuses_login(self):
        p, plain, _ = self.proxy("store-bad-cert")
        reply = self.login(plain, "bad", "bad-pw")
        self.assertTrue(reply.startswith(b"a NO [UNAVAILABLE]"), reply)
        harness.wait_for_log(p.log_path, r"user=\"bad\".*result=unavailable.*"
                                         r"certificate verification failed", 10)
        # tls_verify = false: the same store is accepted.
        self.assertTrue(self.login(plain, "lax", "lax-pw").startswith(b"a OK"))


    # -- reload ------------------------------------------------------------------

    def test_sighup_reloads_the_certificate_and_keeps_sessions(self):
        certs = os.path.join(self.tmp, "reload")
        cert = make_cert(certs, "first", self.ca)
        plain, imaps = harness.free_ports(2)
        config = self.config(plain, imaps).replace(toml_string(self.proxy_cert[0]),
                                                   toml_string(os.path.join(certs, "live.pem")))
        config = config.replace(toml_string(self.proxy_cert[1]),
                                toml_string(os.path.join(certs, "live.key")))
        shutil.copy(cert[0], os.path.join(certs, "live.pem"))
        shutil.copy(cert[1], os.path.join(certs, "live.key"))
        p = Switchyard(None, os.path.join(self.tmp, "reload-proxy"), config)
        self.addCleanup(p.stop)

        def serial():
            with socket.create_connection((HOST, imaps), timeout=10) as raw:
                with self.ctx.wrap_socket(raw, server_hostname="localhost") as t:
                    return t.getpeercert()["serialNumber"]
        first = serial()
        # A logged-in TLS session that must survive the reload.
        conn = imaplib.IMAP4_SSL("localhost", imaps, ssl_context=self.ctx, timeout=20)
        self.addCleanup(conn.shutdown)
        conn.login("tina", "tina-pw")
        second = make_cert(certs, "second", self.ca)
        shutil.copy(second[0], os.path.join(certs, "live.pem"))
        shutil.copy(second[1], os.path.join(certs, "live.key"))
        os.kill(p.pid, signal.SIGHUP)
        harness.wait_until(lambda: serial() != first, 10, "the new certificate")
        self.assertEqual(conn.noop()[0], "OK", "the old session goes on")
        self.assertEqual(conn.select("INBOX", readonly=True)[0], "OK")


if __name__ == "__main__":
    unittest.main()
