"""The fake store itself (tests/integration/fakestore.py), against raw sockets: its default
dialogues, pipelining, the LMTP transaction state that makes a stale transaction visible,
what it records, and every scripted fault.  The fault tests trust it, so it is tested first.
"""

import base64
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from fakestore import FakeStore  # noqa: E402
from harness import LineClient  # noqa: E402

HOST = "127.0.0.1"


class FakeStoreCase(unittest.TestCase):
    protocol = None

    def store(self, **kw):
        s = FakeStore(self.protocol, **kw).start()
        self.addCleanup(self.check_no_errors, s)
        self.addCleanup(s.stop)
        return s

    def check_no_errors(self, store):
        self.assertEqual(store.errors, [], store.describe())

    def client(self, store, timeout=5.0):
        c = LineClient(HOST, store.port, timeout=timeout)
        self.addCleanup(c.close)
        return c

    def lines(self, c, n, timeout=5.0):
        return [c.readline(timeout).decode().rstrip("\r\n") for _ in range(n)]

    def assert_closed(self, c, timeout=5.0):
        """The store closed the connection (FIN) and sent nothing more."""
        self.assertEqual(c.wait_eof(timeout), b"")

    def assert_silent(self, c, seconds=0.3):
        """Nothing arrives for a while (and the connection stays open)."""
        with self.assertRaises(socket.timeout):
            c.readline(seconds)


class LmtpTest(FakeStoreCase):
    protocol = "lmtp"

    def lhlo(self, c):
        self.assertTrue(c.readline().startswith(b"220 "))
        c.send("LHLO client.test\r\n")
        lines = self.lines(c, 4)
        self.assertEqual(lines[0], "250-fakestore.test")
        self.assertIn("250-ENHANCEDSTATUSCODES", lines)
        self.assertEqual(lines[-1], "250 PIPELINING")

    def test_pipelined_transaction_stores_the_unstuffed_message_per_recipient(self):
        s = self.store()
        c = self.client(s)
        self.lhlo(c)
        # Everything up to DATA in one write, as a pipelining client sends it.
        c.send("MAIL FROM:<sender@example.test>\r\nRCPT TO:<amy@example.test>\r\n"
               "RCPT TO:<bea@example.test>\r\nDATA\r\n")
        self.assertEqual(self.lines(c, 4), ["250 2.1.0 OK", "250 2.1.5 OK", "250 2.1.5 OK",
                                            "354 OK"])
        c.send(b"Message-ID: <m1@test>\r\nSubject: x\r\n\r\n..dot line\r\nbare\n.\nLF\r\n"
               b".\r\n")
        finals = self.lines(c, 2)
        self.assertRegex(finals[0], r"^250 2\.0\.0 <amy@example\.test> \S+ Saved$")
        self.assertRegex(finals[1], r"^250 2\.0\.0 <bea@example\.test> \S+ Saved$")
        [m] = s.stored
        self.assertEqual(m.message_id, "m1@test")
        self.assertEqual(m.sender, "sender@example.test")
        self.assertEqual(m.recipients, ["amy@example.test", "bea@example.test"])
        self.assertEqual(m.data, b"Message-ID: <m1@test>\r\nSubject: x\r\n\r\n.dot line\r\n"
                                 b"bare\n.\nLF\r\n")
        self.assertEqual(s.delivered("AMY@example.test"), ["m1@test"])
        self.assertEqual(s.delivered(), ["m1@test", "m1@test"])
        self.assertEqual(s.commands(), ["GREETING", "LHLO", "MAIL", "RCPT", "RCPT", "DATA",
                                        "EOM", "EOM"])
        c.send("RSET\r\nNOOP\r\nVRFY x\r\nXYZZY\r\nQUIT\r\n")
        self.assertEqual(self.lines(c, 5), ["250 2.0.0 OK", "250 2.0.0 OK",
                                            "252 2.3.3 Try RCPT instead",
                                            "500 5.5.1 Unknown command", "221 2.0.0 Bye"])
        self.assert_closed(c)
        self.assertEqual(s.violations, [])
        self.assertEqual(s.connections, 1)

    def test_a_refused_transaction_stays_open_like_dovecots(self):
        # Dovecot 2.3 answers DATA without valid recipients with 503 and keeps MAIL: the
        # next MAIL on that connection is refused until RSET.
        s = self.store(users={"amy"})
        c = self.client(s)
        self.lhlo(c)
        c.send("MAIL FROM:<>\r\nRCPT TO:<ghost@example.test>\r\nDATA\r\nMAIL FROM:<>\r\n")
        self.assertEqual(self.lines(c, 4), [
            "250 2.1.0 OK",
            "550 5.1.1 <ghost@example.test> User doesn't exist: ghost@example.test",
            "503 5.5.0 No valid recipients", "503 5.5.0 MAIL already given"])
        self.assertEqual(len(s.violations), 1)
        self.assertIn("MAIL inside an open transaction", s.violations[0])
        [mail] = [e for e in s.exchanges("MAIL") if e.status.startswith("503")]
        self.assertEqual(mail.line, "MAIL FROM:<>")
        c.send("RSET\r\nMAIL FROM:<>\r\nRCPT TO:<amy@example.test>\r\nDATA\r\n")
        self.assertEqual(self.lines(c, 4), ["250 2.0.0 OK", "250 2.1.0 OK", "250 2.1.5 OK",
                                            "354 OK"])
        c.send("Message-ID: <m2@test>\r\n\r\nhi\r\n.\r\n")
        self.assertTrue(self.lines(c, 1)[0].startswith("250 2.0.0 <amy@example.test>"))
        # A completed message ends the transaction: RCPT needs a new MAIL.
        c.send("RCPT TO:<amy@example.test>\r\nDATA\r\nLHLO again\r\nMAIL FROM:<>\r\n")
        self.assertEqual(self.lines(c, 7), ["503 5.5.0 MAIL needed first",
                                            "503 5.5.0 MAIL needed first",
                                            "250-fakestore.test", "250-8BITMIME",
                                            "250-ENHANCEDSTATUSCODES", "250 PIPELINING",
                                            "250 2.1.0 OK"])
        self.assertEqual(len(s.violations), 1)
        self.assertEqual(s.delivered(), ["m2@test"])

    def test_mail_before_lhlo_is_refused(self):
        s = self.store()
        c = self.client(s)
        c.readline()
        c.send("MAIL FROM:<>\r\n")
        self.assertEqual(self.lines(c, 1), ["503 5.5.1 Send LHLO first"])

    def test_scripted_replies_per_recipient_multiline_and_placeholders(self):
        s = self.store()
        s.on("RCPT", "550 5.1.1 <{rcpt}> no such user", match="ghost@")
        s.on("RCPT", "250-fine\n250 2.1.5 <{rcpt}> OK", match="bea@")
        s.on("EOM", "452 4.2.2 <{rcpt}> Mailbox full", match="amy@")
        s.on("EOM", ["552-5.2.2 quota", "552 5.2.2 <{rcpt}> over quota"], match="cat@")
        c = self.client(s)
        self.lhlo(c)
        c.send("MAIL FROM:<>\r\nRCPT TO:<amy@x.test>\r\nRCPT TO:<ghost@x.test>\r\n"
               "RCPT TO:<bea@x.test>\r\nRCPT TO:<cat@x.test>\r\nRCPT TO:<dan@x.test>\r\nDATA\r\n")
        self.assertEqual(self.lines(c, 8), [
            "250 2.1.0 OK", "250 2.1.5 OK", "550 5.1.1 <ghost@x.test> no such user",
            "250-fine", "250 2.1.5 <bea@x.test> OK", "250 2.1.5 OK", "250 2.1.5 OK", "354 OK"])
        c.send("Message-ID: <m3@test>\r\n\r\nhi\r\n.\r\n")
        finals = self.lines(c, 5)
        self.assertEqual(finals[0], "452 4.2.2 <amy@x.test> Mailbox full")
        self.assertTrue(finals[1].startswith("250 2.0.0 <bea@x.test>"))
        self.assertEqual(finals[2:4], ["552-5.2.2 quota", "552 5.2.2 <cat@x.test> over quota"])
        self.assertTrue(finals[4].startswith("250 2.0.0 <dan@x.test>"))
        [m] = s.stored
        self.assertEqual(m.recipients, ["bea@x.test", "dan@x.test"])
        self.assertEqual(sorted(m.refused), ["amy@x.test", "cat@x.test"])
        self.assertEqual(s.delivered("amy@x.test"), [])

    def test_times_and_connection_limit_a_rule(self):
        s = self.store()
        once = s.on("MAIL", "451 4.3.0 try later", times=1)
        second_conn = s.on("RCPT", "450 4.2.1 busy", connection=2)
        c = self.client(s)
        self.lhlo(c)
        c.send("MAIL FROM:<>\r\nMAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\n")
        self.assertEqual(self.lines(c, 3), ["451 4.3.0 try later", "250 2.1.0 OK",
                                            "250 2.1.5 OK"])
        self.assertEqual(once.used, 1)
        c2 = self.client(s)
        self.lhlo(c2)
        c2.send("MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\n")
        self.assertEqual(self.lines(c2, 2), ["250 2.1.0 OK", "450 4.2.1 busy"])
        self.assertEqual(second_conn.used, 1)
        self.assertEqual(s.connections, 2)
        s.clear()
        c2.send("RCPT TO:<a@x.test>\r\n")
        self.assertEqual(self.lines(c2, 1), ["250 2.1.5 OK"])

    def test_delay_before_answering(self):
        s = self.store()
        s.on("RCPT", delay=0.4)
        c = self.client(s)
        self.lhlo(c)
        c.send("MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\n")
        self.assertEqual(self.lines(c, 1), ["250 2.1.0 OK"])
        started = time.monotonic()
        self.assertEqual(self.lines(c, 1), ["250 2.1.5 OK"])
        self.assertGreaterEqual(time.monotonic() - started, 0.35)

    def test_close_before_answering(self):
        s = self.store()
        s.on("MAIL", close="before")
        c = self.client(s)
        self.lhlo(c)
        c.send("MAIL FROM:<>\r\n")
        self.assert_closed(c)
        [mail] = s.exchanges("MAIL")
        self.assertIsNone(mail.reply)

    def test_close_with_a_reset(self):
        s = self.store()
        s.on("MAIL", close="reset")
        c = self.client(s)
        self.lhlo(c)
        c.send("MAIL FROM:<>\r\n")
        with self.assertRaises(ConnectionResetError):
            harness.wait_until(lambda: c.sock.recv(100) == b"x", 5, "a reset")

    def test_close_after_answering(self):
        s = self.store()
        s.on("RCPT", close="after")
        c = self.client(s)
        self.lhlo(c)
        c.send("MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n")
        self.assertEqual(self.lines(c, 2), ["250 2.1.0 OK", "250 2.1.5 OK"])
        self.assert_closed(c)
        self.assertEqual(s.commands(), ["GREETING", "LHLO", "MAIL", "RCPT"])

    def test_close_in_the_middle_of_data_stores_nothing(self):
        s = self.store()
        s.on("DATA", close_after_bytes=100)
        c = self.client(s)
        self.lhlo(c)
        c.send("MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n")
        self.assertEqual(self.lines(c, 3)[-1], "354 OK")
        c.send("Message-ID: <m4@test>\r\n\r\n" + "x" * 60 + "\r\n")
        self.assert_silent(c)  # 86 bytes so far: not yet
        c.send("y" * 60 + "\r\n.\r\n")
        self.assert_closed(c)
        self.assertEqual(s.stored, [])

    def test_close_before_the_final_replies_and_after_some_of_them(self):
        s = self.store()
        s.on("EOM", close="before", match="bea@")
        c = self.client(s)
        self.lhlo(c)
        c.send("MAIL FROM:<>\r\nRCPT TO:<amy@x.test>\r\nRCPT TO:<bea@x.test>\r\nDATA\r\n")
        self.lines(c, 4)
        c.send("Message-ID: <m5@test>\r\n\r\nhi\r\n.\r\n")
        self.assertTrue(self.lines(c, 1)[0].startswith("250 2.0.0 <amy@x.test>"))
        self.assert_closed(c)
        self.assertEqual(s.stored[0].recipients, ["amy@x.test"])
        self.assertEqual(s.delivered("bea@x.test"), [])

    def test_a_delayed_final_reply_to_a_client_that_left_stores_nothing(self):
        s = self.store()
        s.on("EOM", delay=0.5)
        c = self.client(s)
        self.lhlo(c)
        c.send("MAIL FROM:<>\r\nRCPT TO:<amy@x.test>\r\nDATA\r\n")
        self.lines(c, 3)
        c.send("Message-ID: <m6@test>\r\n\r\nhi\r\n.\r\n")
        c.close()
        harness.wait_until(lambda: s.exchanges("EOM") and not s.open_connections(), 5,
                           "the store to give up")
        self.assertEqual(s.delivered(), [])
        self.assertIsNone(s.exchanges("EOM")[0].reply)

    def test_hang_answers_nothing_until_the_store_stops(self):
        s = self.store()
        s.on("RCPT", hang=True)
        c = self.client(s)
        self.lhlo(c)
        c.send("MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\n")
        self.assertEqual(self.lines(c, 1), ["250 2.1.0 OK"])
        c.send("NOOP\r\nRSET\r\n")
        self.assert_silent(c, 0.5)
        s.stop()
        self.assert_closed(c)

    def test_hang_in_the_middle_of_data(self):
        s = self.store()
        s.on("DATA", hang_after_bytes=10)
        c = self.client(s)
        self.lhlo(c)
        c.send("MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n")
        self.lines(c, 3)
        c.send("Message-ID: <m7@test>\r\n\r\nhi\r\n.\r\n")
        self.assert_silent(c, 0.5)
        self.assertEqual(s.stored, [])
        c.close()  # the store notices the client leaving
        harness.wait_until(lambda: not s.open_connections(), 5, "the hung connection to end")

    def test_greetings(self):
        s = self.store()
        s.on("GREETING", "421 4.3.2 Shutting down", times=1)
        s.on("GREETING", "421-first\n421 4.3.2 still not", times=1, close="never")
        s.on("GREETING", delay=0.3, times=1)
        s.on("GREETING", close="before", times=1)
        s.on("GREETING", hang=True, times=1)
        c = self.client(s)
        self.assertEqual(self.lines(c, 1), ["421 4.3.2 Shutting down"])
        self.assert_closed(c)
        c = self.client(s)
        self.assertEqual(self.lines(c, 2), ["421-first", "421 4.3.2 still not"])
        c.send("NOOP\r\n")
        self.assertEqual(self.lines(c, 1), ["250 2.0.0 OK"])
        started = time.monotonic()
        c = self.client(s)
        self.assertTrue(self.lines(c, 1)[0].startswith("220 "))
        self.assertGreaterEqual(time.monotonic() - started, 0.25)
        self.assert_closed(self.client(s))
        self.assert_silent(self.client(s), 0.3)
        self.assertEqual(s.connections, 5)

    def test_stop_closes_everything_and_the_port(self):
        s = self.store()
        c = self.client(s)
        self.lhlo(c)
        port = s.port
        s.stop()
        self.assert_closed(c)
        with self.assertRaises(OSError):
            socket.create_connection((HOST, port), timeout=2).close()
        self.assertEqual(s.open_connections(), [])

    def test_a_fixed_port_can_be_reused_by_a_new_store(self):
        first = self.store()
        port = first.port
        c = self.client(first)
        self.lhlo(c)
        first.stop()
        second = self.store(port=port)
        c = self.client(second)
        self.lhlo(c)


class ImapTest(FakeStoreCase):
    protocol = "imap"

    def test_login_dialogue(self):
        s = self.store(users={"amy": "pw \"q\" {x}"})
        c = self.client(s)
        greeting = c.readline().decode()
        self.assertTrue(greeting.startswith("* OK [CAPABILITY IMAP4rev1 "), greeting)
        untagged, tagged = c.command("a", "CAPABILITY")
        self.assertTrue(untagged[0].startswith(b"* CAPABILITY IMAP4rev1"))
        self.assertTrue(tagged.startswith(b"a OK"))
        untagged, tagged = c.command("b", 'ID ("name" "proxy")')
        self.assertEqual(untagged, [b'* ID ("name" "fakestore")\r\n'])
        _, tagged = c.command("c", 'LOGIN amy "wrong"')
        self.assertEqual(tagged, b"c NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
        _, tagged = c.command("d", 'LOGIN "amy" "pw \\"q\\" {x}"')
        self.assertTrue(tagged.startswith(b"d OK [CAPABILITY"), tagged)
        _, tagged = c.command("e", "SELECT INBOX")
        self.assertEqual(tagged, b"e OK [READ-WRITE] Select completed.\r\n")
        untagged, tagged = c.command("f", "LOGOUT")
        self.assertEqual(untagged, [b"* BYE Logging out\r\n"])
        self.assert_closed(c)
        self.assertEqual(s.logins, [(1, "amy", False), (1, "amy", True)])
        logged = [e.line for e in s.exchanges("LOGIN")]
        self.assertEqual(logged, ['c LOGIN "amy" ***', 'd LOGIN "amy" ***'])

    def test_literals_and_authenticate_plain(self):
        s = self.store(users={"amy": "secret"})
        c = self.client(s)
        c.readline()
        c.send("a LOGIN {3}\r\n")
        self.assertEqual(c.readline(), b"+ OK\r\n")
        c.send("amy {6+}\r\nsecret\r\n")
        _, tagged = c.read_until_tagged("a")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        plain = base64.b64encode(b"\0amy\0secret").decode()
        _, tagged = c.command("b", "AUTHENTICATE PLAIN " + plain)
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        c.send("c AUTHENTICATE PLAIN\r\n")
        self.assertEqual(c.readline(), b"+ \r\n")
        c.send(base64.b64encode(b"\0amy\0bad").decode() + "\r\n")
        _, tagged = c.read_until_tagged("c")
        self.assertTrue(tagged.startswith(b"c NO [AUTHENTICATIONFAILED]"), tagged)
        self.assertEqual(s.logins, [(1, "amy", True)] * 2 + [(1, "amy", False)])
        self.assertEqual([e.line for e in s.exchanges("AUTHENTICATE")],
                         ["b AUTHENTICATE PLAIN ***", "c AUTHENTICATE PLAIN"])
        for e in s.exchanges():
            self.assertNotIn("secret", e.line)

    def test_pipelined_commands_are_answered_in_order(self):
        s = self.store()
        c = self.client(s)
        c.readline()
        c.send("a NOOP\r\nb LOGIN x y\r\nc NOOP\r\nd FETCH 1 FLAGS\r\n")
        self.assertEqual(self.lines(c, 4), ["a OK NOOP completed.",
                                            "b OK [CAPABILITY IMAP4rev1 ID IDLE] Logged in",
                                            "c OK NOOP completed.", "d OK FETCH completed."])

    def test_faults(self):
        s = self.store()
        s.on("GREETING", "* BYE Server shutting down.", times=1)
        s.on("LOGIN", close="before", times=1)
        s.on("LOGIN", hang=True, times=1)
        s.on("LOGIN", "{tag} NO [UNAVAILABLE] Internal error", times=1)
        s.on("CAPABILITY", delay=0.3, times=1)
        c = self.client(s)
        self.assertEqual(self.lines(c, 1), ["* BYE Server shutting down."])
        self.assert_closed(c)
        c = self.client(s)
        c.readline()
        c.send("a LOGIN amy pw\r\n")
        self.assert_closed(c)
        c = self.client(s)
        c.readline()
        c.send("a LOGIN amy pw\r\n")
        self.assert_silent(c, 0.3)
        c.close()
        c = self.client(s)
        c.readline()
        self.assertEqual(c.command("x", "LOGIN amy pw")[1],
                         b"x NO [UNAVAILABLE] Internal error\r\n")
        started = time.monotonic()
        self.assertTrue(c.command("y", "CAPABILITY")[1].startswith(b"y OK"))
        self.assertGreaterEqual(time.monotonic() - started, 0.25)
        self.assertTrue(c.command("z", "LOGIN amy pw")[1].startswith(b"z OK"))
        self.assertEqual(s.connections, 4)


class Pop3Test(FakeStoreCase):
    protocol = "pop3"

    def test_login_dialogue_pipelined(self):
        s = self.store(users={"amy": "secret"})
        c = self.client(s)
        self.assertEqual(self.lines(c, 1), ["+OK Fake POP3 store fake ready."])
        c.send("CAPA\r\nUSER amy\r\nPASS nope\r\nUSER amy\r\nPASS secret\r\nSTAT\r\n"
               "QUIT\r\n")
        lines = self.lines(c, 9 + 6)
        self.assertEqual(lines[0], "+OK")
        self.assertEqual(lines[8], ".")
        self.assertIn("SASL PLAIN", lines[:9])
        self.assertEqual(lines[9:], ["+OK", "-ERR [AUTH] Authentication failed.", "+OK",
                                     "+OK Logged in.", "+OK 0 0", "+OK Logging out."])
        self.assert_closed(c)
        self.assertEqual(s.logins, [(1, "amy", False), (1, "amy", True)])
        self.assertEqual([e.line for e in s.exchanges("PASS")], ["PASS ***", "PASS ***"])

    def test_auth_plain_and_xclient(self):
        s = self.store(users={"amy": "secret"})
        c = self.client(s)
        c.readline()
        c.send("XCLIENT ADDR=192.0.2.1 PORT=5\r\nAUTH PLAIN\r\n")
        self.assertEqual(self.lines(c, 2), ["+OK", "+ "])
        c.send(base64.b64encode(b"\0amy\0secret").decode() + "\r\n")
        self.assertEqual(self.lines(c, 1), ["+OK Logged in."])
        self.assertEqual([e.line for e in s.exchanges("AUTH")], ["AUTH PLAIN"])

    def test_faults(self):
        s = self.store()
        s.on("GREETING", "-ERR [SYS/TEMP] Too busy", times=1)
        s.on("PASS", close="before", connection=2)
        s.on("USER", hang=True, connection=3)
        c = self.client(s)
        self.assertEqual(self.lines(c, 1), ["-ERR [SYS/TEMP] Too busy"])
        self.assert_closed(c)
        c = self.client(s)
        c.readline()
        c.send("USER amy\r\nPASS pw\r\n")
        self.assertEqual(self.lines(c, 1), ["+OK"])
        self.assert_closed(c)
        c = self.client(s)
        c.readline()
        c.send("USER amy\r\nPASS pw\r\n")
        self.assert_silent(c)
        c = self.client(s)
        c.readline()
        c.send("USER amy\r\nPASS pw\r\n")
        self.assertEqual(self.lines(c, 2), ["+OK", "+OK Logged in."])


if __name__ == "__main__":
    unittest.main()
