"""Integration tests of Switchyard's IMAP proxy in front of two real Dovecot stores.

One pair of stores and one Switchyard are shared by most tests (setUpClass); tests that need
a different configuration start their own Switchyard (and, for the store-crash test, their
own store).  Everything runs on 127.0.0.1 in fresh temporary directories.
"""

import base64
import imaplib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Dovecot, LineClient, Switchyard, backend_section, imap_quote,  # noqa: E402
                     make_sqlite_map, sasl_plain, switchyard_config, wait_for_log)

HOST = "127.0.0.1"

# Passwords that a sloppy parser or a careless quoting would break (no ':' or controls:
# Dovecot's passwd-file cannot hold them).
HARD_PASSWORDS = {
    "hard-space": "pass word with  spaces",
    "hard-quote": 'say "hello"',
    "hard-backslash": "back\\slash\\",
    "hard-utf8": "ünïcödé-пароль-密码",
    "hard-literal": "{5}",
    "hard-literalplus": "x{5+}y",
    "hard-percent": "100%d%u%%",
    "hard-mixed": ' \\"{3} end',
}

STORE1_USERS = {
    "demo1": "demo",
    "alice": "alice-pw",          # also on store2, with other mail: proves routing
    "bob": "bob-pw",              # mapped as host:port
    "portcol": "portcol-pw",      # mapped as servername + port column
    "failover1": "failover-pw",   # backend whose first host refuses connections
    "slowuser": "slow-pw",        # found only after the 1.5 s sleepmap
    "idler": "idle-pw",
    "bigmail": "big-pw",
    "dropper": "drop-pw",
    "pipeliner": "pipe-pw",
    "secretive": "S3cret-Nobody-Logs-This",
    "limited": "limited-pw",
    "walkin": "walkin-pw",        # in no map: reachable only through a fallback
}
STORE1_USERS.update(HARD_PASSWORDS)

STORE2_USERS = {
    "demo2": "demo",
    "alice": "alice-pw",
    "carol.real": "carol-pw",     # reached as "carol" through the store_user column
}


def message(subject, body, extra_headers=""):
    return ("From: test@example.invalid\r\nTo: user@example.invalid\r\n%s"
            "Subject: %s\r\n\r\n%s\r\n" % (extra_headers, subject, body)).encode("utf-8")


def fetch_all_bodies(port, user, password):
    """Log in through imaplib, return the BODY[] of every INBOX message."""
    conn = imaplib.IMAP4(HOST, port, timeout=20)
    try:
        conn.login(user, password)
        typ, data = conn.select("INBOX", readonly=True)
        assert typ == "OK", data
        count = int(data[0])
        if count == 0:
            return []
        typ, data = conn.fetch("1:*", "(BODY.PEEK[])")
        assert typ == "OK", data
        return [part[1] for part in data if isinstance(part, tuple)]
    finally:
        try:
            conn.logout()
        except (imaplib.IMAP4.error, OSError, EOFError):
            pass


_FIELD_RE = re.compile(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|\S+)')


def login_records(text):
    """The key=value fields of every per-login log line (those with "login" and "result=")."""
    records = []
    for line in text.splitlines():
        if "login" in line and "result=" in line:
            records.append({k: v[1:-1] if v.startswith('"') else v
                            for k, v in _FIELD_RE.findall(line)})
    return records


def wait_login_record(log_text, start=0, timeout=10.0, **fields):
    """Poll a Switchyard log until a login line has all `fields`; return its fields."""
    def find():
        for record in login_records(log_text()[start:]):
            if all(record.get(k) == v for k, v in fields.items()):
                return record
        return None
    try:
        return harness.wait_until(find, timeout, "login log line with %r" % fields)
    except AssertionError as e:
        raise AssertionError("%s; log since the action:\n%s" % (e, log_text()[start:][-3000:]))


def greeted(port):
    """A raw client that has read the proxy's greeting."""
    client = LineClient(HOST, port)
    greeting = client.readline()
    assert greeting.startswith(b"* OK"), greeting
    return client


class StoreSanity(unittest.TestCase):
    """The stores themselves accept what the proxy tests expect them to (a baseline)."""

    def test_hard_passwords_work_against_dovecot_directly(self):
        workdir = harness.make_workdir("switchyard-it-sanity-")
        store = Dovecot("sanity", os.path.join(workdir, "sanity"), users=HARD_PASSWORDS)
        try:
            for user, password in HARD_PASSWORDS.items():
                with LineClient(HOST, store.imap_port) as c:
                    c.readline()
                    _, tagged = c.command("a", b"LOGIN " + imap_quote(user) + b" "
                                          + imap_quote(password))
                    self.assertTrue(tagged.startswith(b"a OK"), (user, tagged))
        finally:
            store.stop()
            shutil.rmtree(workdir, ignore_errors=True)


class ImapProxyTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        try:
            cls._start_servers()
        except BaseException:
            cls.tearDownClass()   # unittest skips it when setUpClass fails
            raise

    @classmethod
    def _start_servers(cls):
        binary = harness.require_file(harness.switchyard_binary(), "the switchyard binary")
        harness.require_file(os.path.join(harness.map_dir(), "sqlite.so"), "the sqlite map")
        cls.sleepmap = harness.require_file(harness.test_module("sleepmap"),
                                            "the sleepmap test module")
        cls.binary = binary
        cls.tmp = harness.make_workdir("switchyard-it-")
        cls.store1 = Dovecot("store1", os.path.join(cls.tmp, "store1"), users=STORE1_USERS)
        cls.store2 = Dovecot("store2", os.path.join(cls.tmp, "store2"), users=STORE2_USERS)

        s1, s2 = cls.store1, cls.store2
        s1.add_message("demo1", message("Welcome demo1 - you are on store1", "demo1 on store1"))
        s2.add_message("demo2", message("Welcome demo2 - you are on store2", "demo2 on store2"))
        s1.add_message("alice", message("alice on store1", "alice mail kept on store1"))
        s2.add_message("alice", message("alice on store2", "alice mail kept on store2"))
        s1.add_message("bob", message("bob on store1", "bob via host:port"))
        s1.add_message("portcol", message("portcol on store1", "port from the port column"))
        s2.add_message("carol.real", message("carol.real on store2", "carol via store_user"))
        s1.add_message("failover1", message("failover1 on store1", "reached after fail-over"))
        s1.add_message("slowuser", message("slowuser on store1", "slow but found"))
        s1.add_message("walkin", message("walkin on store1", "reached by fallback"))
        s1.maildir("demo1", "INBOX.on-store1")
        s2.maildir("demo2", "INBOX.on-store2")

        cls.map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"), [
            ("demo1", "store1"),
            ("demo2", "store2"),
            ("alice", "store2"),
            ("bob", "127.0.0.1:%d" % s1.imap_port),
            ("portcol", "127.0.0.1", str(s1.imap_port)),
            ("carol", "store2", None, "carol.real"),
            ("failover1", "flaky"),
            ("slowuser", "store1"),
            ("idler", "store1"),
            ("bigmail", "store1"),
            ("dropper", "store1"),
            ("pipeliner", "store1"),
            ("secretive", "store1"),
            ("limited", "store1"),
        ] + [(user, "store1") for user in HARD_PASSWORDS])

        cls.backends = (backend_section("store1", s1.imap_port)
                        + backend_section("store2", s2.imap_port)
                        + backend_section("flaky", s1.imap_port,
                                          hosts=("127.0.0.3", "127.0.0.1")))
        cls.port = harness.free_port()
        cls.config = switchyard_config(
            cls.port,
            maps=[(cls.sleepmap, "1500"), ("sqlite", cls.map_path)],
            backends=cls.backends,
            username={"lowercase": True, "strip_domain": False, "use_map_user": True},
            limits={"login_timeout": "20s", "idle_timeout": "30m", "max_bad_commands": 3,
                    "max_login_attempts": 3, "max_line_length": 8192,
                    "max_literal_size": 8192})
        cls.proxy = Switchyard(binary, os.path.join(cls.tmp, "switchyard"), cls.config)

    @classmethod
    def tearDownClass(cls):
        for name in ("proxy", "store1", "store2"):
            server = getattr(cls, name, None)
            if server is not None:
                server.stop()
        if getattr(cls, "tmp", None) and not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers ------------------------------------------------------------

    def setUp(self):
        self.assertTrue(self.proxy.running(),
                        "switchyard is not running\n" + self.proxy.describe())

    def proxy_log(self):
        return self.proxy.log_text()

    def wait_login(self, start=0, **fields):
        return wait_login_record(self.proxy.log_text, start, **fields)

    def private_proxy(self, name, config_text):
        """A Switchyard of this test's own; stopped when the test ends."""
        proxy = Switchyard(self.binary, os.path.join(self.tmp, name), config_text)
        self.addCleanup(proxy.stop)
        return proxy

    def login_raw(self, user, password, port=None):
        """LOGIN with quoted strings through a raw socket: (client, tagged reply)."""
        client = greeted(port or self.port)
        self.addCleanup(client.close)
        _, tagged = client.command("L1", b"LOGIN " + imap_quote(user) + b" "
                                   + imap_quote(password))
        return client, tagged

    # -- routing ------------------------------------------------------------

    def test_users_land_on_their_mapped_store(self):
        self.assertEqual(fetch_all_bodies(self.port, "demo1", "demo"),
                         [message("Welcome demo1 - you are on store1", "demo1 on store1")])
        self.assertEqual(fetch_all_bodies(self.port, "demo2", "demo"),
                         [message("Welcome demo2 - you are on store2", "demo2 on store2")])

    def test_same_user_on_both_stores_is_routed_by_the_map(self):
        start = len(self.proxy_log())
        bodies = fetch_all_bodies(self.port, "alice", "alice-pw")
        self.assertEqual(bodies, [message("alice on store2", "alice mail kept on store2")])
        record = self.wait_login(start, user="alice", result="ok")
        self.assertEqual(record.get("backend"), "store2", record)
        self.assertEqual(record.get("store_user"), "alice", record)
        self.assertEqual(record.get("server"), "127.0.0.1:%d" % self.store2.imap_port, record)
        self.assertRegex(record.get("client", ""), r"^127\.0\.0\.1:\d+$")
        self.assertRegex(record.get("time", ""), r"^\d+(\.\d+)?ms$")

    def test_map_answer_host_and_port(self):
        self.assertEqual(fetch_all_bodies(self.port, "bob", "bob-pw"),
                         [message("bob on store1", "bob via host:port")])

    def test_map_port_column(self):
        self.assertEqual(fetch_all_bodies(self.port, "portcol", "portcol-pw"),
                         [message("portcol on store1", "port from the port column")])

    def test_store_user_column_renames_the_login(self):
        self.assertEqual(fetch_all_bodies(self.port, "carol", "carol-pw"),
                         [message("carol.real on store2", "carol via store_user")])
        self.wait_login(user="carol", store_user="carol.real", result="ok")
        wait_for_log(self.store2.log_text, r"Login: user=<carol\.real>")

    def test_user_name_is_lowercased_before_lookup(self):
        bodies = fetch_all_bodies(self.port, "DeMo1", "demo")
        self.assertEqual(bodies, [message("Welcome demo1 - you are on store1",
                                          "demo1 on store1")])

    def test_login_reply_is_the_stores_with_post_login_capabilities(self):
        client, tagged = self.login_raw("demo1", "demo")
        self.assertTrue(tagged.startswith(b"L1 OK [CAPABILITY IMAP4rev1"), tagged)
        # SORT is advertised by Dovecot only after login: this line came from the store.
        self.assertIn(b" SORT ", tagged)
        untagged, tagged = client.command("S", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"S OK"), tagged)
        self.assertIn(b"* 1 EXISTS\r\n", untagged)

    def test_store_with_refusing_first_host_fails_over(self):
        start = len(self.proxy_log())
        self.assertEqual(fetch_all_bodies(self.port, "failover1", "failover-pw"),
                         [message("failover1 on store1", "reached after fail-over")])
        self.wait_login(start, user="failover1", backend="flaky",
                        server="127.0.0.1:%d" % self.store1.imap_port, result="ok")
        # The refused first host was really tried (and said so in the log).
        self.assertIn("127.0.0.3", self.proxy_log()[start:])

    # -- failures -----------------------------------------------------------

    def test_wrong_password_gets_the_stores_no_and_may_retry(self):
        start = len(self.proxy_log())
        client = greeted(self.port)
        self.addCleanup(client.close)
        _, tagged = client.command("a1", "LOGIN demo1 wrong-password")
        self.assertRegex(tagged, rb"^a1 NO \[AUTHENTICATIONFAILED\]")
        self.wait_login(start, user="demo1", result="failed")
        wait_for_log(self.store1.log_text, r"passwd-file\(demo1,.*Password mismatch")
        _, tagged = client.command("a2", "LOGIN demo1 demo")
        self.assertTrue(tagged.startswith(b"a2 OK"), tagged)

    def test_unknown_user_is_refused_without_contacting_a_store(self):
        start = len(self.proxy_log())
        client, tagged = self.login_raw("nosuchuser", "whatever")
        self.assertRegex(tagged, rb"^L1 NO \[AUTHENTICATIONFAILED\]")
        self.wait_login(start, user="nosuchuser", result="unknown-user")
        # Let both stores log a marker after the refusal, then look for the user before it.
        for store in (self.store1, self.store2):
            marker = "marker-%d" % random.randrange(10**9)
            with LineClient(HOST, store.imap_port) as direct:
                direct.readline()
                direct.command("m", "LOGIN %s x" % marker)
            wait_for_log(store.log_text, re.escape(marker))
            self.assertNotIn("nosuchuser", store.log_text(), store.name)

    def test_map_tempfail_is_unavailable(self):
        client, tagged = self.login_raw("tempfail", "whatever")
        self.assertRegex(tagged, rb"^L1 NO \[UNAVAILABLE\]")
        self.wait_login(user="tempfail", result="tempfail")

    def test_too_many_failed_logins_end_the_session(self):
        client = greeted(self.port)
        self.addCleanup(client.close)
        for i in range(1, 4):
            client.send("f%d LOGIN limited wrong%d\r\n" % (i, i))
            untagged, tagged = client.read_until_tagged("f%d" % i)
            self.assertRegex(tagged, rb"^f\d NO ")
            if i < 3:
                self.assertNotIn(b"* BYE", b"".join(untagged), "BYE after %d attempts" % i)
        self.assertIn(b"* BYE", b"".join(untagged) + client.wait_eof(5.0))

    # -- login forms --------------------------------------------------------

    def test_hard_passwords_quoted_by_imaplib(self):
        for user, password in HARD_PASSWORDS.items():
            if not password.isascii():
                continue   # imaplib sends ASCII only; raw test below covers UTF-8
            with self.subTest(user=user):
                conn = imaplib.IMAP4(HOST, self.port, timeout=20)
                try:
                    typ, data = conn.login(user, password)
                    self.assertEqual(typ, "OK", data)
                finally:
                    conn.logout()

    def test_hard_passwords_quoted_raw_with_utf8(self):
        for user, password in HARD_PASSWORDS.items():
            with self.subTest(user=user):
                _, tagged = self.login_raw(user, password)
                self.assertTrue(tagged.startswith(b"L1 OK"), tagged)

    def test_hard_passwords_as_synchronising_literals(self):
        for user, password in HARD_PASSWORDS.items():
            with self.subTest(user=user):
                pw = password.encode("utf-8")
                with greeted(self.port) as c:
                    c.send(b"a LOGIN {%d}\r\n" % len(user))
                    self.assertTrue(c.readline().startswith(b"+"))
                    c.send(user.encode() + b" {%d}\r\n" % len(pw))
                    self.assertTrue(c.readline().startswith(b"+"))
                    c.send(pw + b"\r\n")
                    _, tagged = c.read_until_tagged("a")
                    self.assertTrue(tagged.startswith(b"a OK"), tagged)

    def test_hard_passwords_as_non_synchronising_literals(self):
        for user, password in HARD_PASSWORDS.items():
            with self.subTest(user=user):
                pw = password.encode("utf-8")
                with greeted(self.port) as c:
                    c.send(b"a LOGIN " + imap_quote(user) + b" {%d+}\r\n" % len(pw)
                           + pw + b"\r\n")
                    untagged, tagged = c.read_until_tagged("a")
                    self.assertTrue(tagged.startswith(b"a OK"), (untagged, tagged))
                    self.assertFalse([u for u in untagged if u.startswith(b"+")], untagged)

    def test_authenticate_plain_with_initial_response(self):
        for user, password in HARD_PASSWORDS.items():
            with self.subTest(user=user):
                with greeted(self.port) as c:
                    _, tagged = c.command("a", "AUTHENTICATE PLAIN "
                                          + sasl_plain(user, password))
                    self.assertTrue(tagged.startswith(b"a OK"), tagged)

    def test_authenticate_plain_with_continuation(self):
        with greeted(self.port) as c:
            c.send(b"a AUTHENTICATE PLAIN\r\n")
            self.assertTrue(c.readline().startswith(b"+"))
            c.send(sasl_plain("hard-utf8", HARD_PASSWORDS["hard-utf8"]).encode() + b"\r\n")
            _, tagged = c.read_until_tagged("a")
            self.assertTrue(tagged.startswith(b"a OK [CAPABILITY"), tagged)
            _, tagged = c.command("s", "SELECT INBOX")
            self.assertTrue(tagged.startswith(b"s OK"), tagged)

    def test_authenticate_plain_by_imaplib(self):
        conn = imaplib.IMAP4(HOST, self.port, timeout=20)
        try:
            typ, data = conn.authenticate(
                "PLAIN", lambda _challenge: b"\0demo2\0demo")
            self.assertEqual(typ, "OK", data)
            typ, data = conn.select("INBOX", readonly=True)
            self.assertEqual((typ, data), ("OK", [b"1"]))
        finally:
            conn.logout()

    def test_authenticate_cancelled_with_star(self):
        with greeted(self.port) as c:
            c.send(b"a AUTHENTICATE PLAIN\r\n")
            self.assertTrue(c.readline().startswith(b"+"))
            c.send(b"*\r\n")
            _, tagged = c.read_until_tagged("a")
            self.assertTrue(tagged.startswith(b"a BAD"), tagged)
            _, tagged = c.command("b", "NOOP")      # the session goes on
            self.assertTrue(tagged.startswith(b"b OK"), tagged)

    def test_pipelined_commands_after_login_reach_the_store(self):
        with greeted(self.port) as c:
            c.send(b"p1 NOOP\r\np2 LOGIN pipeliner pipe-pw\r\np3 SELECT INBOX\r\n"
                   b"p4 LOGOUT\r\n")
            for tag in ("p1", "p2", "p3"):
                _, tagged = c.read_until_tagged(tag)
                self.assertRegex(tagged, rb"^%s OK" % tag.encode())
            untagged, tagged = c.read_until_tagged("p4")
            self.assertTrue(tagged.startswith(b"p4 OK"), tagged)

    # -- pre-login protocol -------------------------------------------------

    def test_greeting_and_pre_login_commands(self):
        with LineClient(HOST, self.port) as c:
            greeting = c.readline()
            self.assertRegex(greeting,
                             rb"^\* OK \[CAPABILITY IMAP4rev1 [^\]]*AUTH=PLAIN AUTH=LOGIN")
            self.assertNotIn(b"Dovecot store", greeting)   # the proxy's own, not a store's
            untagged, tagged = c.command("c", "CAPABILITY")
            self.assertTrue(tagged.startswith(b"c OK"), tagged)
            self.assertTrue(any(u.startswith(b"* CAPABILITY IMAP4rev1") and b"AUTH=PLAIN" in u
                                for u in untagged), untagged)
            _, tagged = c.command("n", "NOOP")
            self.assertTrue(tagged.startswith(b"n OK"), tagged)
            untagged, tagged = c.command("i", 'ID ("name" "switchyard-it")')
            self.assertTrue(tagged.startswith(b"i OK"), tagged)
            self.assertTrue(any(u.startswith(b"* ID ") for u in untagged), untagged)
            _, tagged = c.command("s", "SELECT INBOX")
            self.assertRegex(tagged, rb"^s (BAD|NO) ")
            untagged, tagged = c.command("o", "LOGOUT")
            self.assertTrue(any(u.startswith(b"* BYE") for u in untagged), untagged)
            self.assertTrue(tagged.startswith(b"o OK"), tagged)
            self.assertEqual(c.wait_eof(5.0), b"")

    def test_too_long_line_gets_bad_and_the_session_goes_on(self):
        with greeted(self.port) as c:
            c.send(b"a NOOP " + b"x" * 9000 + b"\r\n")     # max_line_length = 8192 here
            _, tagged = c.read_until_tagged("a")
            self.assertEqual(tagged, b"a BAD line too long\r\n")
            _, tagged = c.command("b", "LOGIN demo1 demo")
            self.assertTrue(tagged.startswith(b"b OK"), tagged)

    def test_too_many_bad_commands_get_bye_and_close(self):
        with greeted(self.port) as c:
            received = b""
            for sent in range(1, 5):
                c.send(b"b%d FROBNICATE\r\n" % sent)
                untagged, tagged = c.read_until_tagged(b"b%d" % sent)
                self.assertRegex(tagged, rb"^b\d BAD ")
                received = b"".join(untagged)
                # Is the session over?  Look briefly before sending more: writing to a
                # closed socket would make the kernel drop the BYE already received.
                try:
                    received += c.wait_eof(0.3)
                    break
                except OSError:   # socket.timeout: still open
                    pass
            self.assertIn(sent, (3, 4), "max_bad_commands = 3")
            self.assertIn(b"* BYE", received)

    # -- relay --------------------------------------------------------------

    def test_ten_megabyte_message_is_fetched_byte_exact(self):
        rng = random.Random(20240521)
        raw_body = base64.encodebytes(rng.randbytes(7_600_000)).replace(b"\n", b"\r\n")
        raw = message("ten megabytes", "see below") + raw_body
        self.assertGreater(len(raw), 10_000_000)
        self.store1.add_message("bigmail", raw)
        conn = imaplib.IMAP4(HOST, self.port, timeout=60)
        try:
            conn.login("bigmail", "big-pw")
            conn.select("INBOX", readonly=True)
            typ, data = conn.fetch("1", "(BODY.PEEK[])")
            self.assertEqual(typ, "OK")
            fetched = data[0][1]
            self.assertEqual(len(fetched), len(raw))
            self.assertTrue(fetched == raw, "message content differs")
            typ, data = conn.noop()                  # the stream is still in step
            self.assertEqual(typ, "OK")
        finally:
            conn.logout()

    def test_idle_notification_passes_through(self):
        with greeted(self.port) as c:
            _, tagged = c.command("l", "LOGIN idler idle-pw")
            self.assertTrue(tagged.startswith(b"l OK"), tagged)
            untagged, tagged = c.command("s", "SELECT INBOX")
            self.assertIn(b"* 0 EXISTS\r\n", untagged)
            c.send(b"i IDLE\r\n")
            self.assertTrue(c.readline().startswith(b"+"))
            self.store1.add_message("idler", message("wake up", "idle notification"))
            deadline = time.monotonic() + 10.0
            while True:
                line = c.read_response(max(0.0, deadline - time.monotonic()))
                if line == b"* 1 EXISTS\r\n":
                    break
            c.send(b"DONE\r\n")
            _, tagged = c.read_until_tagged("i")
            self.assertTrue(tagged.startswith(b"i OK"), tagged)

    def test_slow_lookup_does_not_hold_up_other_sessions(self):
        slow = greeted(self.port)
        other = greeted(self.port)
        self.addCleanup(slow.close)
        self.addCleanup(other.close)
        started = time.monotonic()
        slow.send(b"s LOGIN slowuser slow-pw\r\n")
        # While the sleepmap holds the lookup, another session is answered at once.
        for tag, cmd in (("n1", "NOOP"), ("c1", "CAPABILITY"), ("n2", "NOOP")):
            t0 = time.monotonic()
            _, tagged = other.command(tag, cmd, timeout=5.0)
            elapsed = time.monotonic() - t0
            self.assertTrue(tagged.startswith(tag.encode() + b" OK"), tagged)
            self.assertLess(elapsed, 0.5, "%s took %.3fs during a slow lookup" % (cmd, elapsed))
        t0 = time.monotonic()
        with greeted(self.port):
            self.assertLess(time.monotonic() - t0, 0.5, "greeting delayed by a slow lookup")
        self.assertLess(time.monotonic() - started, 1.4,
                        "the checks above were too slow to overlap the lookup")
        _, tagged = slow.read_until_tagged("s", timeout=10.0)
        self.assertTrue(tagged.startswith(b"s OK"), tagged)
        self.assertGreaterEqual(time.monotonic() - started, 1.4,
                                "the sleepmap did not delay the lookup: test proves nothing")

    def test_client_disconnect_mid_session(self):
        c = greeted(self.port)
        _, tagged = c.command("l", "LOGIN dropper drop-pw")
        self.assertTrue(tagged.startswith(b"l OK"), tagged)
        _, tagged = c.command("s", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"s OK"), tagged)
        c.close()
        # The store sees its session end, and the proxy keeps serving others.
        wait_for_log(self.store1.log_text, r"imap\(dropper\)<\d+><[^>]*>: \S*:? ?Disconnected")
        self.assertEqual(fetch_all_bodies(self.port, "demo2", "demo"),
                         [message("Welcome demo2 - you are on store2", "demo2 on store2")])

    def test_curl_lists_inbox_through_the_proxy(self):
        curl = shutil.which("curl")
        self.assertIsNotNone(curl, "curl is required")
        result = subprocess.run(
            [curl, "-sS", "--max-time", "20", "imap://%s:%d/INBOX" % (HOST, self.port),
             "-u", "demo1:demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("INBOX.on-store1", result.stdout)
        result = subprocess.run(
            [curl, "-sS", "--max-time", "20", "imap://%s:%d/INBOX;UID=1" % (HOST, self.port),
             "-u", "demo2:demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("Subject: Welcome demo2 - you are on store2", result.stdout)

    def test_password_never_appears_in_the_log(self):
        secret = STORE1_USERS["secretive"]
        wrong = "Wr0ng-Secret-Also-Unlogged"
        start = len(self.proxy_log())
        _, tagged = self.login_raw("secretive", secret)
        self.assertTrue(tagged.startswith(b"L1 OK"), tagged)
        _, tagged = self.login_raw("secretive", wrong)
        self.assertTrue(tagged.startswith(b"L1 NO"), tagged)
        with greeted(self.port) as c:
            _, tagged = c.command("a", "AUTHENTICATE PLAIN " + sasl_plain("secretive", secret))
            self.assertTrue(tagged.startswith(b"a OK"), tagged)
        with greeted(self.port) as c:
            c.send(b"a AUTHENTICATE PLAIN\r\n")
            c.readline()
            c.send(sasl_plain("secretive", wrong).encode() + b"\r\n")
            _, tagged = c.read_until_tagged("a")
            self.assertTrue(tagged.startswith(b"a NO"), tagged)
        def results():
            return sorted(r.get("result") for r in login_records(self.proxy_log()[start:])
                          if r.get("user") == "secretive")
        harness.wait_until(lambda: len(results()) >= 4, 10.0, "four login lines")
        self.assertEqual(results(), ["failed", "failed", "ok", "ok"])
        log = self.proxy_log()
        for needle in (secret, wrong, sasl_plain("secretive", secret),
                       sasl_plain("secretive", wrong), "Wr0ng", "S3cret"):
            self.assertNotIn(needle, log)

    # -- configurations of their own ----------------------------------------

    def test_config_check_accepts_the_shared_config(self):
        result = harness.check_config(self.proxy.conf_path, self.binary)
        self.assertEqual(result.returncode, 0, result.stdout)

    def test_config_check_reports_unknown_key_with_line(self):
        bad = self.config.replace("[limits]\n", "[limits]\nno_such_limit = 5\n", 1)
        expected_line = bad.splitlines().index("no_such_limit = 5") + 1
        path = os.path.join(self.tmp, "bad-unknown-key.conf")
        with open(path, "w") as f:
            f.write(bad)
        result = harness.check_config(path, self.binary)
        self.assertNotEqual(result.returncode, 0, result.stdout)
        self.assertRegex(result.stdout, r"bad-unknown-key\.conf:%d:" % expected_line)

    def test_fallback_backend_for_unmapped_users(self):
        port = harness.free_port()
        proxy = self.private_proxy("fallback", switchyard_config(
            port, maps=[("sqlite", self.map_path)], backends=self.backends,
            fallback="store1"))
        self.assertEqual(fetch_all_bodies(port, "walkin", "walkin-pw"),
                         [message("walkin on store1", "reached by fallback")])
        # Mapped users still go where the map says.
        self.assertEqual(fetch_all_bodies(port, "alice", "alice-pw"),
                         [message("alice on store2", "alice mail kept on store2")])
        wait_login_record(proxy.log_text, user="walkin", backend="store1", result="ok")
        # Without the fallback the same user is unknown.
        _, tagged = self.login_raw("walkin", "walkin-pw")
        self.assertRegex(tagged, rb"^L1 NO \[AUTHENTICATIONFAILED\]")

    def test_sigterm_stops_cleanly_and_pid_file_names_the_process(self):
        port = harness.free_port()
        pid_file = os.path.join(self.tmp, "sigterm", "switchyard.pid")
        proxy = self.private_proxy("sigterm", switchyard_config(
            port, maps=[("sqlite", self.map_path)], backends=self.backends,
            extra_top='pid_file = %s\n' % harness.toml_string(pid_file)))
        harness.wait_until(lambda: os.path.exists(pid_file), 5.0, "pid_file written")
        with open(pid_file) as f:
            self.assertEqual(int(f.read().strip()), proxy.pid)
        # A client still at the login prompt is told at once and does not delay the stop.
        client = greeted(port)
        self.addCleanup(client.close)
        t0 = time.monotonic()
        self.assertEqual(proxy.stop(timeout=15.0), 0, proxy.describe())
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertIn(b"* BYE Server shutting down", client.wait_eof(2.0))

    def test_login_timeout_ends_an_idle_unauthenticated_session(self):
        port = harness.free_port()
        self.private_proxy("timeout", switchyard_config(
            port, maps=[("sqlite", self.map_path)], backends=self.backends,
            limits={"login_timeout": "2s"}))
        with greeted(port) as c:
            t0 = time.monotonic()
            received = c.wait_eof(8.0)
            elapsed = time.monotonic() - t0
        self.assertRegex(received, rb"\* BYE .*(?i:time|autologout|too long)")
        self.assertGreater(elapsed, 1.5, "closed before the login timeout")
        self.assertLess(elapsed, 5.0, "closed long after the login timeout")

    def test_store_disconnect_mid_session_reaches_the_client(self):
        store = Dovecot("store3", os.path.join(self.tmp, "store3"),
                        users={"victim": "victim-pw"})
        self.addCleanup(store.stop)
        db = make_sqlite_map(os.path.join(self.tmp, "store3.db"), [
            ("victim", "store3"), ("demo1", "store1")])
        port = harness.free_port()
        proxy = self.private_proxy("crash", switchyard_config(
            port, maps=[("sqlite", db)],
            backends=backend_section("store3", store.imap_port) + self.backends))
        c = greeted(port)
        self.addCleanup(c.close)
        _, tagged = c.command("l", "LOGIN victim victim-pw")
        self.assertTrue(tagged.startswith(b"l OK"), tagged)
        _, tagged = c.command("s", "SELECT INBOX")
        self.assertTrue(tagged.startswith(b"s OK"), tagged)
        imap_pids = store.imap_processes()
        self.assertEqual(len(imap_pids), 1, imap_pids)
        os.kill(imap_pids[0], signal.SIGKILL)
        t0 = time.monotonic()
        c.wait_eof(5.0)
        self.assertLess(time.monotonic() - t0, 3.0)
        # The proxy survives and serves the next client.
        self.assertTrue(proxy.running(), proxy.describe())
        self.assertEqual(fetch_all_bodies(port, "demo1", "demo"),
                         [message("Welcome demo1 - you are on store1", "demo1 on store1")])
        # A whole store going away is seen too.
        c2 = greeted(port)
        self.addCleanup(c2.close)
        _, tagged = c2.command("l", "LOGIN victim victim-pw")
        self.assertTrue(tagged.startswith(b"l OK"), tagged)
        store.crash()
        t0 = time.monotonic()
        c2.wait_eof(5.0)
        self.assertLess(time.monotonic() - t0, 3.0)
        _, tagged = self.login_raw("victim", "victim-pw", port=port)
        self.assertRegex(tagged, rb"^L1 NO \[UNAVAILABLE\]")


if __name__ == "__main__":
    unittest.main()
