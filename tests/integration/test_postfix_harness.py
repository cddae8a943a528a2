"""The Postfix harness (postfix.py) proven against real servers, with no Switchyard yet.

A real Postfix instance delivers over LMTP straight into a real Dovecot store (the harness'
Dovecot, its lmtp listener on 127.0.0.1): messages land in the users' Maildirs exactly once
with their content intact; with the store down they are deferred and, once it is back
(restarted on the same ports), delivered exactly once after a flush.  transport_maps and
postmap_query are checked with plain texthash/hash maps and with a minimal socketmap server
of this file (FakeSocketmap), as Switchyard's socketmap service will be asked.

Dovecot's LMTP looks the recipient up by its full address: the store runs with
auth_username_format = %n so that alice@example.test is the passwd-file user "alice".
"""

import os
import re
import shutil
import socket
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Dovecot, wait_until  # noqa: E402
from postfix import Postfix, lmtp_nexthop  # noqa: E402

DOMAIN = "example.test"
USERS = {"alice": "alice-pw", "bob": "bob-pw"}
SENDER = "sender@sender.test"


def address(user):
    return "%s@%s" % (user, DOMAIN)


def message(msgid, to, subject, body):
    """A complete message (CRLF): Postfix adds no header but its Received:."""
    return ("From: Sender <%s>\r\nTo: %s\r\nSubject: %s\r\n"
            "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <%s>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            "%s\r\n" % (SENDER, ", ".join(to), subject, msgid, body)).encode("ascii")


_MSGID_RE = re.compile(rb"^Message-ID:\s*<([^>]*)>", re.I | re.M)


def stored_messages(store, user):
    """{Message-ID: [file contents]} of the user's Maildir (headers only are searched)."""
    found = {}
    for path in store.mailbox_files(user):
        with open(path, "rb") as f:
            data = f.read()
        head = data.split(b"\n\n", 1)[0]
        m = _MSGID_RE.search(head)
        key = m.group(1).decode("ascii", "replace") if m else None
        found.setdefault(key, []).append(data)
    return found


class FakeSocketmap:
    """A minimal Postfix socketmap server on a unix socket (threads of this process).

    answers: {(name, key): reply text, e.g. "OK lmtp:inet:127.0.0.1:24"}; other keys get
    "NOTFOUND ".  .requests lists every "name key" received.
    """

    def __init__(self, path, answers):
        self.path = path
        self.answers = dict(answers)
        self.requests = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)   # Postfix's daemons (user postfix) connect to it
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        with conn:
            conn.settimeout(30)
            while True:
                while b":" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                length, _, rest = buf.partition(b":")
                size = int(length)
                while len(rest) < size + 1:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    rest += chunk
                request, buf = rest[:size].decode(), rest[size + 1:]
                self.requests.append(request)
                name, _, key = request.partition(" ")
                reply = self.answers.get((name, key), "NOTFOUND ").encode()
                conn.sendall(b"%d:%s," % (len(reply), reply))


class PostfixHarnessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_workdir("switchyard-postfix-")
        cls.store = None
        cls.mta = None
        try:
            cls.store = Dovecot("pfstore", os.path.join(cls.tmp, "store"), users=USERS,
                                extra_conf="auth_username_format = %n\n")
            cls.transport_path = os.path.join(cls.tmp, "transport")
            with open(cls.transport_path, "w") as f:
                f.write("carol@%s error:5.1.1 carol moved away\n" % DOMAIN)
            cls.mta = Postfix(os.path.join(cls.tmp, "postfix"), lmtp_port=cls.store.lmtp_port,
                              transport_maps="texthash:" + cls.transport_path)
        except Exception:
            cls.tearDownClass()   # unittest skips it when setUpClass fails
            raise

    @classmethod
    def tearDownClass(cls):
        for server in (cls.mta, cls.store):
            if server is not None:
                server.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        # Each test starts from an empty queue and a running store.
        self.mta.delete_queue()
        self.store.start()

    def send_ok(self, recipients, msgid, subject, body):
        raw = message(msgid, recipients, subject, body)
        result = self.mta.send(SENDER, recipients, raw)
        self.assertTrue(result.ok, "not queued: %r" % (result,))
        return result, raw

    def assert_delivered_once(self, expected):
        """expected: {msgid: (raw, [users])}: every message in each of its users' Maildirs
        exactly once, with its content intact, and nowhere else."""
        for user in USERS:
            stored = stored_messages(self.store, user)
            for msgid, (raw, users) in expected.items():
                copies = stored.get(msgid, [])
                if user in users:
                    self.assertEqual(len(copies), 1, "%s has %d copies of %s"
                                     % (user, len(copies), msgid))
                    # Dovecot stores LF line ends; our headers and body follow the
                    # trace headers (Return-Path, Delivered-To, Received) unchanged.
                    self.assertTrue(copies[0].endswith(raw.replace(b"\r\n", b"\n")),
                                    "%s's copy of %s differs:\n%r" % (user, msgid, copies[0]))
                    if len(users) == 1:   # Dovecot adds it for a lone RCPT only
                        self.assertIn(b"Delivered-To: " + address(user).encode(), copies[0])
                else:
                    self.assertEqual(copies, [], "%s got %s" % (user, msgid))

    def test_delivers_over_lmtp_into_the_store(self):
        start = len(self.mta.log_text())
        plan = [("basic-1@test", ["alice"]), ("basic-2@test", ["bob"]),
                ("basic-3@test", ["alice", "bob"])]   # one LMTP transaction, two RCPTs
        expected = {}
        queue_ids = {}
        for n, (msgid, users) in enumerate(plan):
            result, raw = self.send_ok([address(u) for u in users], msgid,
                                       "basic %d" % n, "Body of message %d.\r\n.dot line" % n)
            expected[msgid] = (raw, users)
            queue_ids[msgid] = result.queue_id
        self.mta.wait_queue_empty(30)
        for msgid, (raw, users) in expected.items():
            for user in users:
                m = self.mta.wait_status(address(user), "sent", dsn=r"2\.\d+\.\d+",
                                         queue_id=queue_ids[msgid], timeout=5, start=start)
                self.assertIn("Saved", m.group("reason"))
        sent = self.mta.deliveries(status="sent", start=start)
        self.assertEqual(len(sent), 4, sent)
        self.assertTrue(all(d.service == "postfix/lmtp" and
                            d.relay == "127.0.0.1[127.0.0.1]:%d" % self.store.lmtp_port
                            for d in sent), sent)
        self.assert_delivered_once(expected)

    def test_defers_while_the_store_is_down_then_delivers_once(self):
        self.store.stop()
        start = len(self.mta.log_text())
        expected = {}
        queue_ids = set()
        for n in range(20):
            user = ("alice", "bob")[n % 2]
            msgid = "deferred-%02d@test" % n
            result, raw = self.send_ok([address(user)], msgid, "deferred %d" % n,
                                       "Deferred message %d." % n)
            expected[msgid] = (raw, [user])
            queue_ids.add(result.queue_id)
        self.assertEqual(len(queue_ids), 20)

        def all_deferred():
            return queue_ids <= {d.queue_id for d in
                                 self.mta.deliveries(status="deferred", start=start)}
        wait_until(all_deferred, 30, "a status=deferred line for each of the 20 messages")
        for d in self.mta.deliveries(status="deferred", start=start):
            self.assertRegex(d.dsn, r"^4\.")
        self.assertEqual(self.mta.deliveries(status="sent", start=start), [])
        queue = self.mta.queue()
        self.assertEqual(len(queue), 20)
        self.assertEqual({m["queue_id"] for m in queue}, queue_ids)
        for user in USERS:
            self.assertEqual(self.store.mailbox_files(user), [])

        # The store comes back on the same ports; a flush retries everything at once.
        self.store.start()
        back = len(self.mta.log_text())
        self.mta.flush()
        self.mta.wait_queue_empty(30)
        sent = self.mta.deliveries(status="sent", start=back)
        self.assertEqual(sorted(d.queue_id for d in sent), sorted(queue_ids))
        self.assert_delivered_once(expected)

    def test_transport_maps_route_a_recipient(self):
        # carol is routed by transport_maps to the error transport: smtpd refuses her at
        # RCPT time with the map's reason.
        result = self.mta.send(SENDER, [address("carol")],
                               message("carol@test", [address("carol")], "to carol", "Hi."))
        self.assertFalse(result.ok)
        self.assertEqual(result.rcpt[address("carol")][0], 550)
        self.assertIn("carol moved away", result.text)

    def test_a_recipient_the_store_refuses_bounces(self):
        # dave is not a store user: Dovecot's LMTP refuses him (550 5.1.1) and Postfix
        # bounces.  A null sender keeps the bounce notice out of the queue.
        start = len(self.mta.log_text())
        result = self.mta.send("", [address("dave")],
                               message("dave@test", [address("dave")], "to dave", "Hi."))
        self.assertTrue(result.ok, result)
        m = self.mta.wait_status(address("dave"), "bounced", dsn=r"5\.1\.1",
                                 queue_id=result.queue_id, timeout=15, start=start)
        self.assertRegex(m.group("reason"), r"550 5\.1\.1 .*User doesn't exist")
        self.mta.wait_queue_empty(15)

    def test_postmap_query_plain_maps(self):
        source = os.path.join(self.tmp, "plainmap")
        with open(source, "w") as f:
            f.write("# a comment\n"
                    "alice@example.test   lmtp:inet:127.0.0.1:2424\n"
                    "bob@example.test     OK\n")
        for spec in ("texthash:" + source, "hash:" + source):
            if spec.startswith("hash:"):
                self.mta.postmap(spec)
                self.assertTrue(os.path.exists(source + ".db"))
            self.assertEqual(tuple(self.mta.postmap_query("alice@example.test", spec)),
                             (0, "lmtp:inet:127.0.0.1:2424"), spec)
            self.assertEqual(tuple(self.mta.postmap_query("bob@example.test", spec)),
                             (0, "OK"), spec)
            missing = self.mta.postmap_query("nobody@example.test", spec)
            self.assertEqual(tuple(missing), (1, ""), spec)
            self.assertEqual(missing.errors, "", spec)
        broken = self.mta.postmap_query("alice@example.test",
                                        "hash:" + os.path.join(self.tmp, "no-such-map"))
        self.assertNotEqual(broken.code, 0)
        self.assertIn("fatal", broken.errors)


    def test_socketmap_transport_maps(self):
        # What the socketmap service will be asked: a second instance whose transport_maps
        # is a socketmap routes bob over LMTP to the store and carol to a dead next hop.
        path = os.path.join(self.tmp, "sm.sock")
        dead = harness.free_port()
        fake = FakeSocketmap(path, {
            ("transport", address("bob")): "OK " + lmtp_nexthop(self.store.lmtp_port),
            ("transport", address("carol")): "OK " + lmtp_nexthop(dead),
            ("transport", "key with spaces"): "OK spaced",
            ("transport", "broken@example.test"): "TEMP backend down",
        })
        self.addCleanup(fake.close)
        spec = "socketmap:unix:%s:transport" % path
        self.assertEqual(tuple(self.mta.postmap_query(address("bob"), spec)),
                         (0, lmtp_nexthop(self.store.lmtp_port)))
        self.assertEqual(tuple(self.mta.postmap_query("key with spaces", spec)), (0, "spaced"))
        self.assertEqual(tuple(self.mta.postmap_query(address("nobody"), spec)), (1, ""))
        broken = self.mta.postmap_query("broken@example.test", spec)
        self.assertNotEqual(broken.code, 0)
        self.assertIn("backend down", broken.errors)

        # virtual_transport itself points nowhere: only the socketmap's answer delivers.
        mta = Postfix(os.path.join(self.tmp, "postfix-sm"), lmtp_port=dead,
                      transport_maps=spec)
        self.addCleanup(mta.stop)
        start = len(mta.log_text())
        raw = message("sm-1@test", [address("bob")], "via socketmap", "Routed by a socketmap.")
        sent = mta.send(SENDER, [address("bob")], raw)
        to_carol = mta.send(SENDER, [address("carol")],
                            message("sm-2@test", [address("carol")], "dead", "Deferred."))
        self.assertTrue(sent.ok and to_carol.ok, (sent, to_carol))
        mta.wait_status(address("bob"), "sent", queue_id=sent.queue_id, timeout=15,
                        start=start)
        m = mta.wait_status(address("carol"), "deferred", queue_id=to_carol.queue_id,
                            timeout=15, start=start)
        self.assertIn(":%d" % dead, m.group("reason"))
        self.assertEqual(mta.queue_ids(), [to_carol.queue_id])
        self.assertIn("transport " + address("bob"), fake.requests)
        self.assert_delivered_once({"sm-1@test": (raw, ["bob"])})

if __name__ == "__main__":
    unittest.main()
