"""No message lost, none doubled, whatever a store does (issue 8).

A real Switchyard routes each recipient to a real Dovecot or to the scriptable fake store
(fakestore.py), which refuses recipients, answers 4xx/5xx after DATA, greets with 421,
closes after MAIL, after RCPT, in the middle of DATA or before the final replies, answers
past [lmtp] store_timeout, or hangs.  Every fault is followed by more messages over the same
client connection (so over the same pooled store connection), and every message is looked
up in the mailboxes by Message-ID: exactly once after a 250, never after a 4xx/5xx.  The fake
store also checks the router's manners: no MAIL is ever given inside an open transaction
(Dovecot answers "503 5.5.0 MAIL already given"), and a refused transaction is followed by
RSET (or the connection is dropped) before the connection is used again.
Postfix in front shows that retries afterwards deliver each message exactly once.  The same
fake store, as an IMAP and a POP3 store, checks that store-login faults (a 421 or BYE
greeting, a close during LOGIN, a hang) give the client a temporary failure in bounded time
and leave the proxy serving the next login.
"""

import os
import re
import shutil
import smtplib
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from fakestore import FakeStore  # noqa: E402
from harness import Dovecot, LineClient, Switchyard, make_sqlite_map, toml_string  # noqa: E402
from postfix import Postfix  # noqa: E402

HOST = "127.0.0.1"
LMTP_CONF = "auth_username_format = %n\n"
STORE_TIMEOUT = 1.0        # [lmtp] store_timeout, seconds
SLOW = 2.5                 # a store answering later than that
FAKE = ["r1@fake.test", "r2@fake.test", "r3@fake.test"]
AMY = "amy@example.test"
GHOST = "ghost@example.test"   # routed to Dovecot, which does not know her
# The store side of an IMAP/POP3 login (connect, greeting, LOGIN) must end within this
# (the back end's login_timeout below is 2s); the client's login_timeout is far longer,
# so only the store-side bound can pass these tests.
STORE_LOGIN_BOUND = 6.0


def message(mid, size=600):
    """A message with Message-ID <mid@test>, padded to about `size` bytes."""
    head = ("From: sender@example.test\r\nTo: rcpt@example.test\r\nSubject: %s\r\n"
            "Message-ID: <%s@test>\r\n\r\n" % (mid, mid))
    body = "".join("line %03d of %s\r\n" % (i, mid) for i in range(max(1, size // 20)))
    return (head + body).encode()


def is_temporary(code):
    return 400 <= code < 500


class LmtpClient:
    """One client connection to the router (smtplib.LMTP), messages sent in sequence."""

    def __init__(self, port, timeout=20.0):
        self.smtp = smtplib.LMTP(HOST, port, timeout=timeout)
        self.smtp.ehlo_or_helo_if_needed = lambda: None
        code, text = self.smtp.docmd("LHLO", "client.test")
        if code != 250:
            raise AssertionError("LHLO answered %d %r" % (code, text))

    def close(self):
        try:
            self.smtp.close()
        except OSError:
            pass

    def send(self, rcpts, mid, size=600):
        """One transaction: {recipient: (code, text)} with the router's verdicts, from RCPT
        for refused recipients and from after DATA for the accepted ones."""
        c = self.smtp
        code, text = c.docmd("MAIL", "FROM:<sender@example.test>")
        if code != 250:
            raise AssertionError("MAIL answered %d %r" % (code, text))
        verdicts, accepted = {}, []
        for r in rcpts:
            code, text = c.docmd("RCPT", "TO:<%s>" % r)
            if code == 250:
                accepted.append(r)
            else:
                verdicts[r] = (code, text.decode("utf-8", "replace"))
        if not accepted:
            code, text = c.docmd("RSET")
            if code != 250:
                raise AssertionError("RSET answered %d %r" % (code, text))
            return verdicts
        code, text = c.docmd("DATA")
        if code != 354:
            raise AssertionError("DATA answered %d %r" % (code, text))
        c.send(message(mid, size) + b".\r\n")
        for r in accepted:
            code, text = c.getreply()
            verdicts[r] = (code, text.decode("utf-8", "replace"))
        return verdicts


class LmtpFaultTest(unittest.TestCase):
    """The router with a real Dovecot (amy, bea; not ghost) and a fake store (*@fake.test)."""

    postfix = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-lmtp-faults-")
        os.chmod(cls.tmp, 0o755)
        cls.dovecot = Dovecot("lmf", os.path.join(cls.tmp, "dovecot"),
                              users={"amy": "amy-pw", "bea": "bea-pw"}, extra_conf=LMTP_CONF)
        rows = [(AMY, "dv"), ("bea@example.test", "dv"), (GHOST, "dv")]
        rows += [(r, "fake") for r in FAKE]
        cls.map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"), rows)
        # Postfix (when a test starts it) sends to this port: every router listens there.
        cls.lmtp_port = harness.free_port()
        cls.serial = 0

    @classmethod
    def tearDownClass(cls):
        for s in ("postfix", "dovecot"):
            if getattr(cls, s, None):
                getattr(cls, s).stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        type(self).serial += 1
        self.fake = FakeStore("lmtp", name="f%d" % self.serial).start()
        self.addCleanup(self.fake.stop)
        self.router = self.start_router()
        self.addCleanup(self.router.stop)

    def start_router(self, limits=""):
        """A fresh router (so a fresh store pool) for each test; limits: [limits] lines."""
        config = ("workers = 1\nmap_dir = %s\n[log]\ntarget = \"stderr\"\nlevel = \"debug\"\n\n"
                  "[[listen]]\nprotocol = \"lmtp\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
                  "[username]\nstrip_domain = false\n\n"
                  "[lookup]\ncache_size = 0\n\n"
                  "[lmtp]\nstore_timeout = \"%gs\"\n\n"
                  "[backend.dv]\nhost = \"127.0.0.1\"\nlmtp = %d\n"
                  "connect_timeout = \"1s\"\ndown_time = \"0s\"\n\n"
                  "[backend.fake]\nhost = \"127.0.0.1\"\nlmtp = %d\n"
                  "connect_timeout = \"1s\"\ndown_time = \"0s\"\n"
                  % (toml_string(harness.map_dir()), self.lmtp_port,
                     toml_string(self.map_path), STORE_TIMEOUT, self.dovecot.lmtp_port,
                     self.fake.port))
        if limits:
            config += "\n[limits]\n%s\n" % limits
        name = "router%d%s" % (self.serial, "-limits" if limits else "")
        return Switchyard(None, os.path.join(self.tmp, name), config)

    def client(self):
        c = LmtpClient(self.lmtp_port)
        self.addCleanup(c.close)
        return c

    # -- what the stores hold -------------------------------------------------

    def dovecot_ids(self, user):
        ids = []
        for path in self.dovecot.mailbox_files(user):
            with open(path, "rb") as f:
                m = re.search(rb"^Message-ID: <([^>@]+)@test>", f.read(), re.M | re.I)
            ids.append(m.group(1).decode() if m else None)
        return ids

    def stored_ids(self, rcpt):
        if rcpt.endswith("@fake.test"):
            return [m[:-len("@test")] for m in self.fake.delivered(rcpt) if m]
        return self.dovecot_ids(rcpt.split("@")[0])

    def describe(self):
        return "%s\n%s" % (self.fake.describe(), self.router.describe()[-5000:])

    # -- sending and checking -------------------------------------------------

    def key(self, mid):
        """The Message-ID's local part: unique across tests (they share one Dovecot)."""
        return "t%d-%s" % (self.serial, mid)

    def send(self, c, rcpts, mid, size=600):
        return c.send(rcpts, self.key(mid), size)

    def assert_exactly_once(self, verdicts, mid):
        """250: the message is in that recipient's mailbox exactly once; otherwise never."""
        for r, (code, text) in verdicts.items():
            n = self.stored_ids(r).count(self.key(mid))
            if code == 250:
                self.assertEqual(n, 1, "%s got 250 for %s (%s) but the store holds it %d "
                                       "times\n%s" % (r, mid, text, n, self.describe()))
            else:
                self.assertEqual(n, 0, "%s got %d for %s (%s) but the store holds it\n%s"
                                 % (r, code, mid, text, self.describe()))

    def assert_delivered(self, verdicts, mid):
        """Every recipient got 250 for its own message (in step) and holds it once."""
        for r, (code, text) in verdicts.items():
            self.assertEqual(code, 250, "%s, message %s: %d %s\n%s"
                             % (r, mid, code, text, self.describe()))
            self.assertIn("<%s>" % r, text, "the reply is %s's own (in step)" % r)
            if r.endswith("@fake.test"):
                # The store's own final reply (it carries a unique id) reached the client.
                [stored] = [s for s in self.fake.stored
                            if s.message_id == self.key(mid) + "@test"]
                self.assertIn(stored.replies[r].split()[3], text,
                              "the router passed on the store's reply to this message")
        self.assert_exactly_once(verdicts, mid)

    def more_messages(self, c, tag, rcpts=None, count=2):
        """After a fault: more messages over the same client connection, each delivered."""
        for i in range(count):
            mid = "%s-after-%d" % (tag, i)
            self.assert_delivered(self.send(c, rcpts or FAKE[:2] + [AMY], mid), mid)

    def assert_store_manners(self):
        """No MAIL inside an open transaction; after a refused transaction (DATA not
        answered 354) the next command on that connection is RSET (or LHLO/QUIT), or the
        connection is closed; no connection idles with a transaction open."""
        self.assertEqual(self.fake.violations, [], self.describe())
        refused_mail = [e for e in self.fake.exchanges("MAIL") if e.status.startswith("503")]
        self.assertEqual(refused_mail, [], self.describe())

        def cleaned_up():
            for conn in range(1, self.fake.connections + 1):
                exchanges = self.fake.exchanges(connection=conn)
                in_transaction = False
                for i, e in enumerate(exchanges):
                    ok = e.status.startswith("2")
                    if e.command == "MAIL" and ok:
                        in_transaction = True
                    elif e.command in ("RSET", "LHLO") and ok or e.command == "EOM":
                        in_transaction = False
                    elif e.command == "DATA" and e.reply is not None and in_transaction \
                            and not e.status.startswith("354"):
                        # A refused transaction: RSET next, or the connection dropped.
                        nxt = exchanges[i + 1].command if i + 1 < len(exchanges) else None
                        if nxt is None and conn in self.fake.open_connections():
                            return False
                        if nxt not in (None, "RSET", "LHLO", "QUIT"):
                            return False
            return not self.fake.open_transactions()
        try:
            harness.wait_until(cleaned_up, 5.0, "RSET or a close after each refused "
                                                "transaction")
        except AssertionError as e:
            raise AssertionError("%s\n%s" % (e, self.describe())) from None

    def tearDown(self):
        self.assertEqual(self.fake.errors, [], self.describe())

    # -- the sequence, against real Dovecot ---------------------------

    def test_unknown_recipient_on_dovecot_then_more_messages_are_delivered(self):
        c = self.client()
        v = self.send(c, [GHOST], "hl-0")
        self.assertEqual(v[GHOST][0], 550, v)
        self.assertIn("5.1.1", v[GHOST][1])
        for i in (1, 2, 3):
            mid = "hl-%d" % i
            self.assert_delivered(self.send(c, [AMY], mid), mid)
        # The same again inside one message: ghost refused, amy delivered, then more.
        v = self.send(c, [GHOST, AMY], "hl-4")
        self.assertEqual(v[GHOST][0], 550, v)
        self.assertEqual(v[AMY][0], 250, v)
        self.assert_exactly_once(v, "hl-4")
        for i in (5, 6):
            mid = "hl-%d" % i
            self.assert_delivered(self.send(c, [AMY], mid), mid)

    # -- refusals: each recipient gets its store's own verdict ----------------

    def refuse_all(self, reply, code, status):
        c = self.client()
        self.assert_delivered(self.send(c, FAKE[:2], "before"), "before")  # a pooled connection
        self.fake.on("RCPT", reply, times=2)
        v = self.send(c, FAKE[:2] + [AMY], "refused")
        for r in FAKE[:2]:
            self.assertEqual(v[r][0], code, v)
            self.assertIn(status, v[r][1])
        self.assertEqual(v[AMY][0], 250, v)
        self.assert_exactly_once(v, "refused")
        self.more_messages(c, "refused")
        self.assert_store_manners()

    def test_store_refuses_every_recipient_5xx(self):
        self.refuse_all("550 5.1.1 <{rcpt}> User doesn't exist: {rcpt}", 550, "5.1.1")

    def test_store_refuses_every_recipient_4xx(self):
        self.refuse_all("450 4.2.1 <{rcpt}> Mailbox busy", 450, "4.2.1")

    def test_store_refuses_some_recipients(self):
        c = self.client()
        self.assert_delivered(self.send(c, FAKE, "before"), "before")
        self.fake.on("RCPT", "550 5.1.1 <{rcpt}> User doesn't exist", match="r1@", times=1)
        self.fake.on("RCPT", "452 4.2.2 <{rcpt}> Mailbox full", match="r3@", times=1)
        v = self.send(c, FAKE, "some")
        self.assertEqual([v[r][0] for r in FAKE], [550, 250, 452], v)
        self.assertIn("4.2.2", v[FAKE[2]][1])
        self.assert_exactly_once(v, "some")
        self.more_messages(c, "some")
        self.assert_store_manners()

    def test_store_refuses_per_recipient_after_data(self):
        c = self.client()
        self.assert_delivered(self.send(c, FAKE, "before"), "before")
        self.fake.on("EOM", "452 4.2.2 <{rcpt}> Mailbox full", match="r1@", times=1)
        self.fake.on("EOM", "554 5.6.0 <{rcpt}> Message refused", match="r2@", times=1)
        v = self.send(c, FAKE + [AMY], "after-data")
        self.assertEqual([v[r][0] for r in FAKE + [AMY]], [452, 554, 250, 250], v)
        self.assertIn("4.2.2", v[FAKE[0]][1])
        self.assertIn("5.6.0", v[FAKE[1]][1])
        self.assert_exactly_once(v, "after-data")
        self.more_messages(c, "after-data")
        self.assert_store_manners()

    def test_store_refuses_data(self):
        c = self.client()
        self.assert_delivered(self.send(c, FAKE[:2], "before"), "before")
        for reply, code in (("451 4.3.0 Temporary failure", 451), ("554 5.3.4 No way", 554)):
            self.fake.on("DATA", reply, times=1)
            v = self.send(c, FAKE[:2] + [AMY], "data-%d" % code)
            self.assertEqual([v[r][0] for r in FAKE[:2]], [code, code], v)
            self.assertEqual(v[AMY][0], 250, v)
            self.assert_exactly_once(v, "data-%d" % code)
            self.more_messages(c, "data-%d" % code, count=1)
        self.assert_store_manners()

    def test_store_refuses_mail(self):
        c = self.client()
        self.assert_delivered(self.send(c, FAKE[:2], "before"), "before")
        self.fake.on("MAIL", "451 4.3.0 Try again later", times=1)
        v = self.send(c, FAKE[:2] + [AMY], "no-mail")
        self.assertEqual([v[r][0] for r in FAKE[:2]], [451, 451], v)
        self.assertEqual(v[AMY][0], 250, v)
        self.assert_exactly_once(v, "no-mail")
        self.more_messages(c, "no-mail")
        self.assert_store_manners()

    # -- a store that is not there: 4xx, never 250 ----------------------------

    def test_store_greets_421(self):
        self.fake.on("GREETING", "421 4.3.2 Service shutting down")
        c = self.client()
        v = self.send(c, FAKE[:2] + [AMY], "greet-421")
        for r in FAKE[:2]:
            self.assertTrue(is_temporary(v[r][0]), v)
        self.assertEqual(v[AMY][0], 250, v)
        self.assert_exactly_once(v, "greet-421")
        self.assertGreaterEqual(self.fake.connections, 1)
        self.fake.clear()
        self.more_messages(c, "greet-421")
        self.assert_store_manners()

    def test_store_greets_slowly_past_store_timeout(self):
        self.fake.on("GREETING", delay=SLOW)
        c = self.client()
        started = time.monotonic()
        v = self.send(c, FAKE[:2], "greet-slow")
        self.assertLess(time.monotonic() - started, SLOW * 3)
        for r in FAKE[:2]:
            self.assertTrue(is_temporary(v[r][0]), v)
        self.assert_exactly_once(v, "greet-slow")
        self.fake.clear()
        self.more_messages(c, "greet-slow")
        self.assert_store_manners()

    # Each fault hits a pooled connection (the message before it went over one), stays
    # in force for the whole message (so a retry on a fresh connection fails too), and
    # is followed by a good message on the same client connection.
    CONNECTION_FAULTS = [
        ("closes when MAIL arrives", dict(command="MAIL", close="before")),
        ("closes after answering MAIL", dict(command="MAIL", close="after")),
        ("resets when MAIL arrives", dict(command="MAIL", close="reset")),
        ("closes when RCPT arrives", dict(command="RCPT", close="before")),
        ("closes after answering RCPT", dict(command="RCPT", close="after")),
        ("closes when DATA arrives", dict(command="DATA", close="before")),
        ("closes in the middle of DATA", dict(command="DATA", close_after_bytes=400)),
        ("closes before the final replies", dict(command="EOM", close="before")),
        ("answers RCPT past store_timeout", dict(command="RCPT", delay=SLOW)),
        ("answers DATA past store_timeout", dict(command="DATA", delay=SLOW)),
        ("hangs in the middle of DATA", dict(command="DATA", hang_after_bytes=400)),
        ("answers the final replies past store_timeout", dict(command="EOM", delay=SLOW)),
    ]

    def test_store_connection_faults_give_4xx_and_lose_nothing(self):
        c = self.client()
        self.assert_delivered(self.send(c, FAKE[:2], "first"), "first")
        for n, (name, fault) in enumerate(self.CONNECTION_FAULTS):
            with self.subTest(fault=name):
                mid = "fault-%d" % n
                self.fake.on(**fault)
                started = time.monotonic()
                v = self.send(c, FAKE[:2] + [AMY], mid, size=4000)
                elapsed = time.monotonic() - started
                self.fake.clear()
                for r in FAKE[:2]:
                    self.assertTrue(is_temporary(v[r][0]), "%s: %s\n%s"
                                    % (name, v, self.describe()))
                self.assertEqual(v[AMY][0], 250, v)
                self.assert_exactly_once(v, mid)
                # A store timeout costs a few store_timeouts at most (a retry included).
                self.assertLess(elapsed, 4 * STORE_TIMEOUT + 2 * SLOW, name)
                self.more_messages(c, mid, count=1)
        # Every failure says which session, which store and why.
        reasons = re.findall(r'lmtp delivery: session=\d+ store=fake server=\S+ reason="([^"]+)"',
                             self.router.log_text())
        self.assertGreaterEqual(len(reasons), len(self.CONNECTION_FAULTS), self.describe())
        self.assertTrue(any(r.startswith("timeout") for r in reasons), reasons)
        self.assertTrue(any(r.startswith("connection lost") for r in reasons), reasons)
        self.assert_store_manners()

    def test_store_closes_after_some_final_replies(self):
        c = self.client()
        self.assert_delivered(self.send(c, FAKE, "before"), "before")
        self.fake.on("EOM", close="before", match="r2@")
        v = self.send(c, FAKE + [AMY], "half")
        self.fake.clear()
        self.assertEqual(v[FAKE[0]][0], 250, v)
        self.assertTrue(is_temporary(v[FAKE[1]][0]), v)
        self.assertTrue(is_temporary(v[FAKE[2]][0]), v)
        self.assertEqual(v[AMY][0], 250, v)
        self.assert_exactly_once(v, "half")
        self.more_messages(c, "half")
        self.assert_store_manners()

    def test_store_closing_an_idle_pooled_connection(self):
        # The store ends the connection after each message (as after an idle timeout):
        # the router finds its pooled connection dead and must deliver on a fresh one.
        self.fake.on("EOM", close="after", match="r2@")
        c = self.client()
        for i in range(3):
            mid = "idle-%d" % i
            self.assert_delivered(self.send(c, FAKE[:2], mid), mid)
        self.assertGreaterEqual(self.fake.connections, 3)
        self.assert_store_manners()

    # -- Postfix retries afterwards: each message exactly once ----------------

    def start_postfix(self):
        if LmtpFaultTest.postfix is None:
            LmtpFaultTest.postfix = Postfix(os.path.join(self.tmp, "postfix"),
                                            lmtp_port=self.lmtp_port,
                                            domains=("example.test", "fake.test"))
        return LmtpFaultTest.postfix

    def postfix_round(self, postfix, prefix, n, rcpts):
        for i in range(n):
            r = postfix.send("sender@example.test", rcpts, message("%s-%d" % (prefix, i)))
            self.assertTrue(r.ok, r)

    def assert_each_once(self, rcpt, prefix, n):
        ids = sorted(m for m in self.stored_ids(rcpt) if m and m.startswith(prefix + "-"))
        self.assertEqual(ids, sorted("%s-%d" % (prefix, i) for i in range(n)),
                         "%s: each message exactly once\n%s" % (rcpt, self.describe()))

    def test_postfix_retries_after_a_store_closing_mid_data_deliver_exactly_once(self):
        postfix = self.start_postfix()
        start = len(postfix.log_text())
        n = 3
        self.fake.on("DATA", close_after_bytes=200)
        self.postfix_round(postfix, "pf-close", n, [FAKE[0], AMY])
        harness.wait_until(lambda: len([m for m in self.dovecot_ids("amy")
                                        if m and m.startswith("pf-close-")]) == n, 30,
                           "amy's copies")
        harness.wait_until(lambda: len(postfix.deliveries(FAKE[0], "deferred", start)) >= n,
                           30, "%d deferrals for %s" % (n, FAKE[0]))
        for d in postfix.deliveries(FAKE[0], "deferred", start):
            self.assertTrue(d.dsn.startswith("4."), d.line)
        self.assertEqual(self.fake.delivered(FAKE[0]), [])
        self.fake.clear()
        postfix.flush()
        postfix.wait_queue_empty(30)
        self.assert_each_once(FAKE[0], "pf-close", n)
        self.assert_each_once(AMY, "pf-close", n)
        self.assert_store_manners()

    def test_postfix_retries_after_dovecot_was_down_deliver_exactly_once(self):
        postfix = self.start_postfix()
        n = 3
        c = self.client()  # a pooled connection to Dovecot, about to die
        self.assert_delivered(self.send(c, [AMY], "pf-pool"), "pf-pool")
        start = len(postfix.log_text())
        self.dovecot.stop()
        try:
            self.postfix_round(postfix, "pf-down", n, [AMY, FAKE[1]])
            harness.wait_until(lambda: len(self.fake.delivered(FAKE[1])) >= n, 30,
                               "the fake store's copies")
            harness.wait_until(lambda: len(postfix.deliveries(AMY, "deferred", start)) >= n,
                               30, "%d deferrals for amy" % n)
            for d in postfix.deliveries(AMY, "deferred", start):
                self.assertTrue(d.dsn.startswith("4."), d.line)
        finally:
            self.dovecot.start()
        postfix.flush()
        postfix.wait_queue_empty(30)
        self.assert_each_once(AMY, "pf-down", n)
        self.assert_each_once(FAKE[1], "pf-down", n)
        self.assert_delivered(self.send(c, [AMY, FAKE[0]], "pf-down-after"), "pf-down-after")
        self.assert_store_manners()


    def test_a_client_that_pipelines_and_never_reads_is_closed_after_idle_timeout(self):
        # The replies to pipelined commands are written together; a client that keeps
        # sending and reads nothing makes that write block. It must not hold the session
        # (and its worker's resources) for ever: idle_timeout bounds the write too.
        self.router.stop()
        self.router = self.start_router(limits='idle_timeout = "1s"')
        self.addCleanup(self.router.stop)
        s = socket.socket()
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once
        s.settimeout(10)
        s.connect((HOST, self.lmtp_port))
        self.assertTrue(s.recv(4096).startswith(b"220"))
        start = len(self.router.log_text())
        burst = b"NOOP\r\n" * 10000
        s.settimeout(2)
        sent = 0
        try:
            while sent < 64 * 1024 * 1024:  # bounded; the router stops reading long before
                s.sendall(burst)
                sent += len(burst)
        except (socket.timeout, OSError):
            pass  # blocked: the router no longer reads, its replies fill our buffer
        self.assertLess(sent, 64 * 1024 * 1024, "the router kept reading without writing")
        harness.wait_for_log(self.router.log_path, r"lmtp session \d+ closed", 15, start=start)


class StoreLoginFaultTest(unittest.TestCase):
    """IMAP and POP3 logins to a fake store that misbehaves: the client gets a temporary
    failure within STORE_LOGIN_BOUND and the next login works."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-login-faults-")
        os.chmod(cls.tmp, 0o755)
        cls.imap = FakeStore("imap", users={"amy": "amy-pw"}, name="imap").start()
        cls.pop3 = FakeStore("pop3", users={"amy": "amy-pw"}, name="pop3").start()
        map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"), [("amy", "fake")])
        cls.imap_port, cls.pop3_port = harness.free_ports(2)
        config = ("workers = 1\nmap_dir = %s\n[log]\ntarget = \"stderr\"\nlevel = \"debug\"\n\n"
                  "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[listen]]\nprotocol = \"pop3\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
                  "[lookup]\ncache_size = 0\n\n"
                  "[limits]\nlogin_timeout = \"30s\"\n\n"
                  "[backend.fake]\nhost = \"127.0.0.1\"\nimap = %d\npop3 = %d\n"
                  "connect_timeout = \"1s\"\nlogin_timeout = \"2s\"\ndown_time = \"0s\"\n"
                  % (toml_string(harness.map_dir()), cls.imap_port, cls.pop3_port,
                     toml_string(map_path), cls.imap.port, cls.pop3.port))
        cls.proxy = Switchyard(None, os.path.join(cls.tmp, "proxy"), config)

    @classmethod
    def tearDownClass(cls):
        for s in ("proxy", "imap", "pop3"):
            if getattr(cls, s, None):
                getattr(cls, s).stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.imap.clear()
        self.pop3.clear()

    def tearDown(self):
        self.assertEqual(self.imap.errors + self.pop3.errors, [])

    def describe(self, store):
        return "%s\n%s" % (store.describe(), self.proxy.describe()[-4000:])

    def connect(self, port):
        c = LineClient(HOST, port, timeout=10)
        self.addCleanup(c.close)
        c.readline()
        return c

    # -- IMAP -----------------------------------------------------------------

    def imap_fault(self, **fault):
        self.imap.on(**fault)
        c = self.connect(self.imap_port)
        started = time.monotonic()
        try:
            _, tagged = c.command("a1", "LOGIN amy amy-pw", timeout=STORE_LOGIN_BOUND)
        except (socket.timeout, EOFError) as e:
            self.fail("no answer to LOGIN within %.0fs (%s)\n%s"
                      % (STORE_LOGIN_BOUND, e, self.describe(self.imap)))
        elapsed = time.monotonic() - started
        self.assertTrue(tagged.startswith(b"a1 NO [UNAVAILABLE]"), tagged)
        self.assertLess(elapsed, STORE_LOGIN_BOUND)
        self.imap.clear()
        # The same client connection logs in now, and so does a new one.
        _, tagged = c.command("a2", "LOGIN amy amy-pw")
        self.assertTrue(tagged.startswith(b"a2 OK"), tagged)
        untagged, tagged = c.command("a3", "LOGOUT")
        self.assertTrue(tagged.startswith(b"a3 OK"), tagged)
        c2 = self.connect(self.imap_port)
        _, tagged = c2.command("b1", "LOGIN amy amy-pw")
        self.assertTrue(tagged.startswith(b"b1 OK"), tagged)

    def test_imap_store_greets_with_bye(self):
        self.imap_fault(command="GREETING", reply="* BYE Server shutting down.")

    def test_imap_store_greets_with_421(self):
        self.imap_fault(command="GREETING", reply="421 4.3.2 Service not available")

    def test_imap_store_closes_during_login(self):
        self.imap_fault(command="LOGIN", close="before")

    def test_imap_store_resets_during_login(self):
        self.imap_fault(command="LOGIN", close="reset")

    def test_imap_store_hangs_at_the_greeting(self):
        self.imap_fault(command="GREETING", hang=True)

    def test_imap_store_hangs_during_login(self):
        self.imap_fault(command="LOGIN", hang=True)

    # -- POP3 -----------------------------------------------------------------

    def pop3_fault(self, **fault):
        self.pop3.on(**fault)
        c = self.connect(self.pop3_port)
        c.send("USER amy\r\n")
        self.assertTrue(c.readline().startswith(b"+OK"))
        started = time.monotonic()
        c.send("PASS amy-pw\r\n")
        try:
            answer = c.readline(STORE_LOGIN_BOUND)
        except (socket.timeout, EOFError) as e:
            self.fail("no answer to PASS within %.0fs (%s)\n%s"
                      % (STORE_LOGIN_BOUND, e, self.describe(self.pop3)))
        self.assertTrue(answer.startswith(b"-ERR [SYS/TEMP]"), answer)
        self.assertLess(time.monotonic() - started, STORE_LOGIN_BOUND)
        self.pop3.clear()
        c.send("USER amy\r\nPASS amy-pw\r\n")
        self.assertTrue(c.readline().startswith(b"+OK"))
        self.assertTrue(c.readline().startswith(b"+OK Logged in"))
        c.send("QUIT\r\n")
        self.assertTrue(c.readline().startswith(b"+OK"))
        c2 = self.connect(self.pop3_port)
        c2.send("USER amy\r\nPASS amy-pw\r\n")
        self.assertTrue(c2.readline().startswith(b"+OK"))
        self.assertTrue(c2.readline().startswith(b"+OK Logged in"))

    def test_pop3_store_greets_with_err(self):
        self.pop3_fault(command="GREETING", reply="-ERR [SYS/TEMP] Too busy")

    def test_pop3_store_greets_with_421(self):
        self.pop3_fault(command="GREETING", reply="421 4.3.2 Service not available")

    def test_pop3_store_closes_during_login(self):
        self.pop3_fault(command="PASS", close="before")

    def test_pop3_store_hangs_at_the_greeting(self):
        self.pop3_fault(command="GREETING", hang=True)

    def test_pop3_store_hangs_during_login(self):
        self.pop3_fault(command="PASS", hang=True)


if __name__ == "__main__":
    unittest.main()
