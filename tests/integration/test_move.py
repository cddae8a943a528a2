"""The README's mailbox move, run for real while mail keeps coming (issue 13 item 1).

jane@example.test moves from store1 to store2, two real Dovecot stores, following the README
("Moving a user between stores") step by step: `switchyardctl hold`, the doveadm copy over
doveadm's own protocol, an UPDATE of the SQLite map, `switchyardctl release`, `postqueue -f`.
Meanwhile a real Postfix delivers a message to her through Switchyard's LMTP router every
100 ms, and an IMAP client logged in through Switchyard as "Jane@Example.TEST" (another
spelling of the map key) APPENDs a message every 100 ms: its session is ended by the hold, its
logins during the hold get NO [UNAVAILABLE], and after the release it goes on appending, now
to store2.

Checked by Message-ID: every message Postfix logs as sent and every APPEND answered with a
tagged OK is on store2 exactly once, store2 holds no duplicate at all, and nothing reached
store1 once the hold had returned.

Real servers on loopback in temporary directories, stopped by PID.
"""

import collections
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Dovecot, LineClient, Switchyard, make_sqlite_map, toml_string  # noqa: E402
from postfix import Postfix  # noqa: E402

HOST = "127.0.0.1"
USER = "jane@example.test"        # the map key
SPELLING = "Jane@Example.TEST"    # how the IMAP client logs in
PASSWORD = "jane-pw"
DOVEADM_SECRET = "move-test-doveadm-secret"
POSTFIX_MESSAGES = 60             # one every 100 ms
MAX_APPENDS = 300                 # a bound; the appender is stopped long before
PACE = 0.1
MID_RE = re.compile(rb"^Message-ID:[ \t]*<([^>]+)@move\.test>", re.M | re.I)


def store_conf(doveadm_port):
    # auth_username_format = %n: jane@example.test is the passwd-file user "jane".
    # doveadm's own protocol (doveadm sync tcp:HOST:PORT) needs the same doveadm_password on
    # both stores and a doveadm inet listener on the one that is dialled.
    return ("auth_username_format = %%n\n"
            "doveadm_password = %s\n"
            "service doveadm {\n"
            "  inet_listener {\n"
            "    address = 127.0.0.1\n"
            "    port = %d\n"
            "  }\n"
            "}\n" % (DOVEADM_SECRET, doveadm_port))


def doveadm_binary():
    search = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/local/sbin"
    found = shutil.which("doveadm", path=search)
    if not found:
        raise AssertionError("doveadm not found (Debian: apt-get install dovecot-core)")
    return found


def message_ids(store, user):
    """Counter of the Message-IDs in the user's Maildir (new/ and cur/).

    A file is counted once even if Dovecot moves it from new/ to cur/ while we list (the
    part of its name before ':' stays); a listing that loses a file to such a move is
    taken again (bounded).
    """
    for _ in range(20):
        seen = {}
        try:
            for path in store.mailbox_files(user):
                base = os.path.basename(path).split(":", 1)[0]
                with open(path, "rb") as f:
                    head = f.read().split(b"\n\n", 1)[0]
                m = MID_RE.search(head)
                seen[base] = m.group(1).decode() if m else None
        except FileNotFoundError:
            continue
        return collections.Counter(seen.values())
    raise AssertionError("the Maildir of %s on %s kept changing under us" % (user, store.name))


def mail(mid, to=USER, body="hello\r\n"):
    return ("From: sender@example.test\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@move.test>\r\n"
            "\r\n%s" % (to, mid, mid, body)).encode()


class PostfixWriter(threading.Thread):
    """Submits POSTFIX_MESSAGES messages to the user, one every PACE seconds."""

    def __init__(self, postfix):
        super().__init__(daemon=True)
        self.postfix = postfix
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.queued = {}      # queue id -> Message-ID
        self.submitted = {}   # Message-ID -> monotonic time the submission began
        self.errors = []

    def run(self):
        for i in range(POSTFIX_MESSAGES):
            if self.stop_event.is_set():
                return
            mid = "pf-%03d" % i
            with self.lock:
                self.submitted[mid] = time.monotonic()
            try:
                r = self.postfix.send("sender@example.test", [USER], mail(mid))
                with self.lock:
                    if r.ok:
                        self.queued[r.queue_id] = mid
                    else:
                        self.errors.append((mid, r))
            except Exception as e:  # noqa: BLE001 - reported by the test
                with self.lock:
                    self.errors.append((mid, repr(e)))
            self.stop_event.wait(PACE)


class Appender(threading.Thread):
    """An IMAP client through Switchyard, logged in as SPELLING, APPENDing a message with a
    new Message-ID every PACE seconds; when its session ends it logs in again (and again,
    every PACE seconds, while logins are refused)."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.started = {}        # Message-ID -> monotonic time the APPEND began
        self.accepted = {}       # Message-ID -> monotonic time of the tagged OK
        self.refused = []        # tagged NO/BAD
        self.unknown = []        # the session ended before the tagged answer
        self.logins_ok = 0
        self.logins_unavailable = 0
        self.login_failures = []  # anything else
        self.n = 0

    def count_accepted(self):
        with self.lock:
            return len(self.accepted)

    def count_unavailable(self):
        with self.lock:
            return self.logins_unavailable

    def accepted_since(self, t):
        with self.lock:
            return sum(1 for at in self.accepted.values() if at >= t)

    def run(self):
        while not self.stop_event.is_set() and self.n < MAX_APPENDS:
            try:
                c = LineClient(HOST, self.port, timeout=10.0)
            except OSError as e:
                with self.lock:
                    self.login_failures.append(repr(e))
                self.stop_event.wait(PACE)
                continue
            try:
                self.session(c)
            finally:
                c.close()

    def session(self, c):
        try:
            c.readline()
            _, tagged = c.command("l", b"LOGIN " + SPELLING.encode() + b" " + PASSWORD.encode())
        except (EOFError, OSError) as e:
            with self.lock:
                self.login_failures.append(repr(e))
            self.stop_event.wait(PACE)
            return
        if not tagged.startswith(b"l OK"):
            with self.lock:
                if b"[UNAVAILABLE]" in tagged:
                    self.logins_unavailable += 1
                else:
                    self.login_failures.append(tagged)
            self.stop_event.wait(PACE)
            return
        with self.lock:
            self.logins_ok += 1
        while not self.stop_event.is_set() and self.n < MAX_APPENDS:
            mid = "ap-%03d" % self.n
            self.n += 1
            body = mail(mid, body="appended through Switchyard\r\n")
            with self.lock:
                self.started[mid] = time.monotonic()
            try:
                c.send(b"a APPEND INBOX {%d}\r\n" % len(body))
                cont = c.readline()
                if not cont.startswith(b"+"):
                    with self.lock:
                        self.refused.append((mid, cont))
                    continue
                c.send(body + b"\r\n")
                _, tagged = c.read_until_tagged("a")
            except (EOFError, OSError):
                # Ended (by the hold) before the tagged answer: not accepted, fate unknown.
                with self.lock:
                    self.unknown.append(mid)
                return
            with self.lock:
                if tagged.startswith(b"a OK"):
                    self.accepted[mid] = time.monotonic()
                else:
                    self.refused.append((mid, tagged))
            self.stop_event.wait(PACE)
        try:
            c.command("z", b"LOGOUT", timeout=5.0)
        except (EOFError, OSError):
            pass


class MailboxMoveTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="switchyard-move-")
        os.chmod(self.tmp, 0o755)
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            self.addCleanup(shutil.rmtree, self.tmp, True)
        # The user exists on both stores (store2's userdb must know her for the copy).
        users = {"jane": PASSWORD}
        self.doveadm1, self.doveadm2 = harness.free_ports(2)
        self.store1 = Dovecot("mv1", os.path.join(self.tmp, "store1"), users=users,
                              extra_conf=store_conf(self.doveadm1))
        self.addCleanup(self.store1.stop)
        self.store2 = Dovecot("mv2", os.path.join(self.tmp, "store2"), users=users,
                              extra_conf=store_conf(self.doveadm2))
        self.addCleanup(self.store2.stop)
        for port, store in ((self.doveadm1, self.store1), (self.doveadm2, self.store2)):
            harness.wait_port(HOST, port, 15.0, store.process, store.describe)
        self.map_path = make_sqlite_map(os.path.join(self.tmp, "users.db"), [(USER, "store1")])
        self.imap_port, self.lmtp_port = harness.free_ports(2)
        self.ctl_dir = os.path.join(self.tmp, "ctl")
        # Two workers: the hold must reach both. The lookup cache is on (as by default):
        # the release must make every worker forget store1.
        config = ("workers = 2\nmap_dir = %s\ncontrol_dir = %s\n"
                  "[log]\ntarget = \"stderr\"\nlevel = \"info\"\n\n"
                  "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[listen]]\nprotocol = \"lmtp\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
                  "[username]\nstrip_domain = false\n\n"
                  "[backend.store1]\nhost = \"127.0.0.1\"\nimap = %d\nlmtp = %d\n\n"
                  "[backend.store2]\nhost = \"127.0.0.1\"\nimap = %d\nlmtp = %d\n"
                  % (toml_string(harness.map_dir()), toml_string(self.ctl_dir),
                     self.imap_port, self.lmtp_port, toml_string(self.map_path),
                     self.store1.imap_port, self.store1.lmtp_port,
                     self.store2.imap_port, self.store2.lmtp_port))
        self.proxy = Switchyard(None, os.path.join(self.tmp, "proxy"), config)
        self.addCleanup(self.proxy.stop)
        self.postfix = Postfix(os.path.join(self.tmp, "postfix"), lmtp_port=self.lmtp_port,
                               domains=("example.test",))
        self.addCleanup(self.postfix.stop)

    def ctl(self, *args, timeout=30):
        tool = os.path.join(harness.build_dir(), "switchyardctl")
        harness.require_file(tool, "switchyardctl")
        return subprocess.run([tool, "-c", self.proxy.conf_path] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)

    def logs(self):
        return ("--- switchyard ---\n%s\n--- maillog ---\n%s\n--- store1 ---\n%s\n"
                "--- store2 ---\n%s" % (self.proxy.log_text()[-5000:],
                                        self.postfix.log_text()[-3000:],
                                        self.store1.log_text()[-2000:],
                                        self.store2.log_text()[-2000:]))

    def start_writers(self):
        pf = PostfixWriter(self.postfix)
        ap = Appender(self.imap_port)

        def stop():
            pf.stop_event.set()
            ap.stop_event.set()
            pf.join(20)
            ap.join(20)
        self.addCleanup(stop)
        pf.start()
        ap.start()
        return pf, ap

    def sent_ids(self, pf):
        """Message-IDs Postfix logged as sent to the user (status=sent)."""
        with pf.lock:
            by_queue_id = dict(pf.queued)
        return [by_queue_id[d.queue_id] for d in self.postfix.deliveries(USER, "sent")
                if d.queue_id in by_queue_id]

    def test_move_under_load_loses_and_doubles_nothing(self):
        began = time.monotonic()
        pf, ap = self.start_writers()
        # Both writers are reaching store1 before the move starts.
        harness.wait_until(lambda: len(self.sent_ids(pf)) >= 10 and ap.count_accepted() >= 10,
                           20, "10 deliveries and 10 APPENDs on store1")

        # 1. Hold: the appender's session (another spelling) ends; the command returns once
        # nothing of jane's is in flight.
        t_hold = time.monotonic()
        hold = self.ctl("-t", "20", "hold", USER)
        t_held = time.monotonic()
        self.assertEqual(hold.returncode, 0, hold.stdout + self.logs())
        self.assertIn("nothing in flight", hold.stdout)
        on_store1_at_hold = message_ids(self.store1, "jane")
        with pf.lock, ap.lock:
            pf_before = {m for m, t in pf.submitted.items() if t < t_held}
            ap_started_before = {m for m, t in ap.started.items() if t < t_held}
            ap_accepted_before = {m for m, t in ap.accepted.items() if t < t_held}

        # 2. The copy, exactly as the README gives it, run "on store1".
        copy = subprocess.run([doveadm_binary(), "-c", self.store1.conf_path,
                               "sync", "-1", "-u", USER, "tcp:%s:%d" % (HOST, self.doveadm2)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=60)
        self.assertEqual(copy.returncode, 0, copy.stdout + self.logs())
        t_copied = time.monotonic()

        # While held: Postfix is told 451 4.2.1 (and keeps the mail), logins get
        # NO [UNAVAILABLE]. Seen at least once each before going on.
        harness.wait_until(lambda: any(d.dsn == "4.2.1"
                                       for d in self.postfix.deliveries(USER, "deferred")),
                           10, "a delivery deferred with 4.2.1 during the hold")
        harness.wait_until(lambda: ap.count_unavailable() >= 1, 10,
                           "a login refused with NO [UNAVAILABLE] during the hold")

        # 3. The map change, the release, Postfix's retry.
        db = sqlite3.connect(self.map_path)
        try:
            db.execute("UPDATE tblPerdition SET servername = 'store2' WHERE user = ?", (USER,))
            db.commit()
        finally:
            db.close()
        release = self.ctl("release", USER)
        self.assertEqual(release.returncode, 0, release.stdout)
        t_released = time.monotonic()
        self.postfix.flush()

        # The writers go on against store2 for a while, then stop.
        pf.join(30)
        self.assertFalse(pf.is_alive(), "the Postfix writer finished its %d messages"
                         % POSTFIX_MESSAGES)
        harness.wait_until(lambda: ap.accepted_since(t_released) >= 10, 20,
                           "10 APPENDs accepted after the release")
        ap.stop_event.set()
        ap.join(20)
        self.assertFalse(ap.is_alive(), "the appender stopped")
        self.postfix.wait_queue_empty(30)

        # --- The verdict, by Message-ID. ---
        on_store1 = message_ids(self.store1, "jane")
        on_store2 = message_ids(self.store2, "jane")
        sent = self.sent_ids(pf)
        with ap.lock:
            appended = dict(ap.accepted)
            unknown = list(ap.unknown)
            refused = list(ap.refused)
            logins = (ap.logins_ok, ap.logins_unavailable, list(ap.login_failures))
        report = ("postfix: %d submitted, %d sent (%d status=sent lines), %d deferred lines "
                  "with 4.2.1, errors %r; appender: %d APPENDs accepted (%d before the hold, "
                  "%d after the release), %d cut by the hold %r, %d refused %r; logins: %d ok, "
                  "%d NO [UNAVAILABLE], other %r; store1: %d messages; store2: %d messages; "
                  "hold took %.2fs, copy %.2fs, test %.1fs"
                  % (len(pf.submitted), len(set(sent)), len(sent),
                     sum(1 for d in self.postfix.deliveries(USER, "deferred") if d.dsn == "4.2.1"),
                     pf.errors, len(appended), len(ap_accepted_before),
                     ap.accepted_since(t_released), len(unknown), unknown, len(refused), refused,
                     logins[0], logins[1], logins[2], sum(on_store1.values()),
                     sum(on_store2.values()), t_held - t_hold, t_copied - t_held,
                     time.monotonic() - began))
        print("\n" + report, file=sys.stderr)

        self.assertEqual(pf.errors, [], report)
        self.assertEqual(logins[2], [], report)
        self.assertEqual(refused, [], report)
        self.assertEqual(self.postfix.deliveries(USER, "bounced"), [], report)
        # Every message Postfix took was delivered, once (one status=sent line each).
        self.assertEqual(sorted(sent), sorted(pf.queued.values()), report)
        self.assertEqual(len(sent), POSTFIX_MESSAGES, report)

        # On the destination: everything accepted, exactly once; no duplicate of anything.
        accepted = set(sent) | set(appended)
        missing = sorted(m for m in accepted if on_store2[m] == 0)
        self.assertEqual(missing, [], "lost on store2\n" + report + "\n" + self.logs())
        doubled = sorted(m for m, n in on_store2.items() if n > 1)
        self.assertEqual(doubled, [], "doubled on store2\n" + report + "\n" + self.logs())
        self.assertNotIn(None, on_store2, "a message without our Message-ID on store2")
        # Whatever store1 held at the copy (cut APPENDs that Dovecot saved included) is on
        # store2 too.
        self.assertEqual(sorted(m for m in on_store1 if on_store2[m] == 0), [], report)

        # Nothing reached store1 once the hold had returned: it holds what it held then,
        # all of it begun before the hold returned, and every APPEND it acknowledged then.
        self.assertEqual(on_store1, on_store1_at_hold, "store1 changed after the hold\n" + report)
        late = sorted(m for m in on_store1 if m not in pf_before | ap_started_before)
        self.assertEqual(late, [], "begun after the hold, yet on store1\n" + report)
        self.assertEqual(sorted(m for m in ap_accepted_before if on_store1[m] != 1), [], report)
        # And after the release nothing went to store1: the later APPENDs are on store2 only.
        self.assertGreaterEqual(ap.accepted_since(t_released), 10, report)


class HoldDuringLookupTest(unittest.TestCase):
    """A hold taken while the map is still being asked for the user (a slow map: the test
    module sleepmap sleeps 800 ms for keys starting with "slow", then the SQLite map answers
    store1) waits for that answer, and neither the LMTP recipient nor the IMAP login then goes
    to store1."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="switchyard-move-lookup-")
        os.chmod(self.tmp, 0o755)
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            self.addCleanup(shutil.rmtree, self.tmp, True)
        self.store1 = Dovecot("mvl", os.path.join(self.tmp, "store1"),
                              users={"slowjane": PASSWORD},
                              extra_conf="auth_username_format = %n\n")
        self.addCleanup(self.store1.stop)
        map_path = make_sqlite_map(os.path.join(self.tmp, "users.db"),
                                   [("slowjane@example.test", "store1")])
        self.imap_port, self.lmtp_port = harness.free_ports(2)
        sleepmap = harness.require_file(harness.test_module("sleepmap"), "the sleepmap test module")
        config = ("workers = 1\nmap_dir = %s\ncontrol_dir = %s\n"
                  "[log]\ntarget = \"stderr\"\nlevel = \"info\"\n\n"
                  "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[listen]]\nprotocol = \"lmtp\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[map]]\nmodule = %s\noptions = \"800\"\n\n"
                  "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
                  "[username]\nstrip_domain = false\n\n"
                  "[backend.store1]\nhost = \"127.0.0.1\"\nimap = %d\nlmtp = %d\n"
                  % (toml_string(harness.map_dir()), toml_string(os.path.join(self.tmp, "ctl")),
                     self.imap_port, self.lmtp_port, toml_string(sleepmap),
                     toml_string(map_path), self.store1.imap_port, self.store1.lmtp_port))
        self.proxy = Switchyard(None, os.path.join(self.tmp, "proxy"), config)
        self.addCleanup(self.proxy.stop)

    def client(self, port):
        c = LineClient(HOST, port)
        self.addCleanup(c.close)
        return c

    def hold(self):
        tool = os.path.join(harness.build_dir(), "switchyardctl")
        started = time.monotonic()
        hold = subprocess.run([tool, "-c", self.proxy.conf_path, "-t", "10", "hold",
                               "slowjane@example.test"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=30)
        self.assertEqual(hold.returncode, 0, hold.stdout + self.proxy.log_text()[-3000:])
        return time.monotonic() - started

    def test_lmtp_recipient_looked_up_when_the_hold_begins_is_held(self):
        lmtp = self.client(self.lmtp_port)
        self.assertTrue(lmtp.readline().startswith(b"220 "))
        lmtp.send(b"LHLO client.test\r\n")
        while not lmtp.readline().startswith(b"250 "):
            pass
        lmtp.send(b"MAIL FROM:<s@example.test>\r\n")
        self.assertTrue(lmtp.readline().startswith(b"250"))
        # The lookup is under way: the RCPT is in before switchyardctl even starts.
        lmtp.send(b"RCPT TO:<slowjane@example.test>\r\n")
        took = self.hold()
        rcpt = lmtp.readline(10)
        if rcpt.startswith(b"250"):
            # The bug this guards against: accepted after the hold returned, so delivered
            # to store1 after the copy. Deliver it, to show where it lands.
            lmtp.send(b"DATA\r\n")
            lmtp.readline(10)
            lmtp.send(b"Message-ID: <late@move.test>\r\n\r\nbody\r\n.\r\n")
            lmtp.readline(10)
        self.assertTrue(rcpt.startswith(b"451 4.2.1"),
                        (rcpt, "hold returned after %.3fs" % took,
                         self.store1.mailbox_files("slowjane"), self.proxy.log_text()[-3000:]))
        self.assertEqual(self.store1.mailbox_files("slowjane"), [])
        self.assertRegex(self.proxy.log_text(),
                         r'lmtp rcpt: .*to="slowjane@example.test" map=hold result=451')

    def test_imap_login_looked_up_when_the_hold_begins_never_reaches_the_store(self):
        imap = self.client(self.imap_port)
        imap.readline()
        # Another spelling; the lookup is under way when the hold begins.
        imap.send(b"a LOGIN SlowJane@Example.TEST " + PASSWORD.encode() + b"\r\n")
        self.hold()
        answer = imap.wait_eof(10.0)
        self.assertNotIn(b"a OK", answer, answer)
        self.assertEqual(self.store1.imap_processes(), [])
        self.assertNotRegex(self.store1.log_text(), r"imap-login: Info: Login: user=<slowjane>")


class HoldWaitsForTheStoreTest(unittest.TestCase):
    """`hold` ends a logged-in session without cutting its store short: the store is told
    there is no more input and finishes what it already received (an APPEND whose literal
    is in), and hold returns only once the store has closed that connection. Before, both
    sockets were closed at once and hold returned while the store was still saving."""

    def setUp(self):
        from fakestore import FakeStore
        self.tmp = harness.make_workdir("switchyard-holddrain-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.store = FakeStore("imap", users={"jane": "jane-pw"}).start()
        self.addCleanup(self.store.stop)
        map_path = make_sqlite_map(os.path.join(self.tmp, "users.db"), [("jane", "store1")])
        self.port = harness.free_port()
        config = ("workers = 1\nmap_dir = %s\ncontrol_dir = %s\n"
                  "[log]\ntarget = \"stderr\"\nlevel = \"info\"\n\n"
                  "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
                  "[backend.store1]\nhost = \"127.0.0.1\"\nimap = %d\n"
                  % (toml_string(harness.map_dir()), toml_string(os.path.join(self.tmp, "ctl")),
                     self.port, toml_string(map_path), self.store.port))
        self.proxy = Switchyard(None, os.path.join(self.tmp, "proxy"), config)
        self.addCleanup(self.proxy.stop)

    def test_hold_returns_after_the_store_finished_the_command_in_flight(self):
        self.store.on("NOOP", delay=2.0)  # a store busy saving what it was sent
        c = LineClient(HOST, self.port)
        self.addCleanup(c.close)
        c.readline()
        _, tagged = c.command("a", b"LOGIN jane jane-pw")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        c.send(b"n NOOP\r\n")
        harness.wait_until(lambda: self.store.exchanges("NOOP"), 10, "the store to get NOOP")
        tool = os.path.join(harness.build_dir(), "switchyardctl")
        hold = subprocess.run([tool, "-c", self.proxy.conf_path, "-t", "10", "hold", "jane"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=30)
        open_after_hold = self.store.open_connections()
        self.assertEqual(hold.returncode, 0, hold.stdout + self.proxy.log_text()[-3000:])
        # The store had closed the session's connection by the time hold returned.
        self.assertEqual(open_after_hold, [], self.store.describe())
        c.wait_eof(5.0)  # the client was let go at once
        harness.wait_for_log(self.proxy.log_path, r'user="jane" phase=relay reason=kicked', 10)


if __name__ == "__main__":
    unittest.main()
