"""The metrics listener, end to end: Switchyard with two workers in front of a real Dovecot,
IMAP logins (good and bad), a POP3 login, LMTP deliveries and a store that is down, then
scraped with curl. The counters move by exactly what was done, summed over both workers
whichever worker answers the scrape; live sessions show as gauges; a killed worker's
counts stay (nothing goes back) and its replacement is counted as a restart. The listener
answers only GET /metrics (404, 405, 400 otherwise), bounds the request in size and time,
and refuses clients outside allow_from.
"""

import imaplib
import os
import poplib
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Dovecot, Switchyard, make_sqlite_map, toml_string, wait_until  # noqa: E402

HOST = "127.0.0.1"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{(name, frozenset of (label, value)): float}; checks each family's HELP and TYPE."""
    samples, typed, helped = {}, set(), set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            typed.add(line.split()[2])
        elif line:
            m = SAMPLE.match(line)
            if not m:
                raise AssertionError("not a sample line: %r" % line)
            name, labels, value = m.groups()
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            if family not in typed and name not in typed:
                raise AssertionError("no # TYPE before %r" % line)
            if family not in helped and name not in helped:
                raise AssertionError("no # HELP before %r" % line)
            samples[(name, frozenset(LABEL.findall(labels or "")))] = float(value)
    return samples


workers_of = harness.workers_of


class MetricsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-metrics-")
        os.chmod(cls.tmp, 0o755)
        cls.store = Dovecot("metrics", os.path.join(cls.tmp, "store"),
                            users={"ann": "ann-pw", "ben": "ben-pw"},
                            extra_conf="auth_username_format = %n\n")
        cls.dead_port = harness.free_port()  # nothing listens there
        cls.map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"), [
            ("ann", "store"), ("ben", "store"), ("ann@example.test", "store"),
            ("lost", "gone")])
        (cls.imap_port, cls.pop3_port, cls.lmtp_port, cls.metrics_port,
         cls.closed_port) = harness.free_ports(5)
        config = ("workers = 2\nmap_dir = %s\n[log]\ntarget = \"stderr\"\nlevel = \"debug\"\n\n"
                  "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[listen]]\nprotocol = \"pop3\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[listen]]\nprotocol = \"lmtp\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[listen]]\nprotocol = \"metrics\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "# Only 127.0.0.2 may scrape here: the tests connect from 127.0.0.1.\n"
                  "[[listen]]\nprotocol = \"metrics\"\naddress = \"127.0.0.1:%d\"\n"
                  "allow_from = [\"127.0.0.2\"]\n\n"
                  "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
                  "[username]\nstrip_domain = true\n\n"
                  "[lookup]\ncache_size = 0\n\n"
                  "[backend.store]\nhost = \"127.0.0.1\"\nimap = %d\npop3 = %d\nlmtp = %d\n\n"
                  "[backend.gone]\nhost = \"127.0.0.1\"\nimap = %d\nconnect_timeout = \"1s\"\n"
                  "down_time = \"1h\"\n"
                  % (toml_string(harness.map_dir()), cls.imap_port, cls.pop3_port,
                     cls.lmtp_port, cls.metrics_port, cls.closed_port,
                     toml_string(cls.map_path), cls.store.imap_port, cls.store.pop3_port,
                     cls.store.lmtp_port, cls.dead_port))
        cls.proxy = Switchyard(None, os.path.join(cls.tmp, "proxy"), config)
        wait_until(lambda: len(workers_of(cls.proxy)) == 2, 10, "two workers")

    @classmethod
    def tearDownClass(cls):
        for s in ("proxy", "store"):
            if getattr(cls, s, None):
                getattr(cls, s).stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers -------------------------------------------------------------

    def curl(self, *args, port=None):
        return subprocess.run(
            ["curl", "-sS", "--max-time", "10"] + list(args)
            + ["http://127.0.0.1:%d/%s" % (port or self.metrics_port,
                                           "" if "--path" in args else "metrics")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)

    def scrape(self):
        r = subprocess.run(["curl", "-sS", "--fail", "--max-time", "10", "-D", "-",
                            "http://127.0.0.1:%d/metrics" % self.metrics_port],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr + self.proxy.describe())
        head, _, body = r.stdout.partition("\n\n")  # (text mode: CRLF read as LF)
        self.assertIn("Content-Type: text/plain; version=0.0.4", head)
        return parse(body)

    @staticmethod
    def value(samples, name, **labels):
        return samples.get((name, frozenset(labels.items())), None)

    def delta(self, before, after, name, **labels):
        a = self.value(after, name, **labels)
        self.assertIsNotNone(a, "%s%r missing" % (name, labels))
        return a - (self.value(before, name, **labels) or 0)

    def raw(self, data, port=None, timeout=10):
        with socket.create_connection((HOST, port or self.metrics_port), timeout=timeout) as s:
            if data:
                s.sendall(data)
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    # Closed with our request unread (a refused client): the kernel resets.
                    return out
                if not chunk:
                    return out
                out += chunk

    # -- tests ---------------------------------------------------------------

    def test_1_counters_move_by_what_was_done(self):
        before = self.scrape()
        for _ in range(3):
            c = imaplib.IMAP4(HOST, self.imap_port, timeout=10)
            c.login("ann", "ann-pw")
            c.select("INBOX")
            c.logout()
        for _ in range(2):
            c = imaplib.IMAP4(HOST, self.imap_port, timeout=10)
            with self.assertRaises(imaplib.IMAP4.error):
                c.login("ben", "wrong")
            c.logout()
        c = imaplib.IMAP4(HOST, self.imap_port, timeout=10)
        with self.assertRaises(imaplib.IMAP4.error):
            c.login("lost", "x")  # its store is down
        c.logout()
        p = poplib.POP3(HOST, self.pop3_port, timeout=10)
        p.user("ben")
        p.pass_("ben-pw")
        p.stat()
        p.quit()
        with smtplib.LMTP(HOST, self.lmtp_port, timeout=10) as lmtp:
            refused = lmtp.sendmail("sender@example.test",
                                    ["ann@example.test", "nobody@example.test"],
                                    b"Subject: metrics\r\nMessage-ID: <m1@test>\r\n\r\nhi\r\n")
            self.assertIn("nobody@example.test", refused)

        # The relay counts its bytes when the session ends: wait for the last one.
        def settled():
            s = self.scrape()
            return (self.delta(before, s, "switchyard_relayed_bytes_total", protocol="pop3",
                               direction="to_client") > 0 and
                    self.value(s, "switchyard_sessions", protocol="imap", phase="logged-in") == 0)
        wait_until(settled, 10, "the sessions to end")
        after = self.scrape()
        d = lambda name, **labels: self.delta(before, after, name, **labels)  # noqa: E731
        self.assertEqual(d("switchyard_connections_accepted_total", protocol="imap"), 6)
        self.assertEqual(d("switchyard_connections_accepted_total", protocol="pop3"), 1)
        self.assertEqual(d("switchyard_connections_accepted_total", protocol="lmtp"), 1)
        self.assertEqual(d("switchyard_logins_total", protocol="imap", outcome="ok"), 3)
        self.assertEqual(d("switchyard_logins_total", protocol="imap", outcome="failed"), 2)
        self.assertEqual(d("switchyard_logins_total", protocol="imap", outcome="unavailable"), 1)
        self.assertEqual(d("switchyard_logins_total", protocol="pop3", outcome="ok"), 1)
        self.assertEqual(d("switchyard_logins_total", protocol="pop3", outcome="failed"), 0)
        self.assertGreater(d("switchyard_relayed_bytes_total", protocol="imap",
                             direction="to_store"), 0)
        self.assertGreater(d("switchyard_relayed_bytes_total", protocol="imap",
                             direction="to_client"), 0)
        self.assertEqual(d("switchyard_lmtp_recipients_total", outcome="delivered"), 1)
        self.assertEqual(d("switchyard_lmtp_recipients_total", outcome="refused"), 1)
        # Lookups: 6 IMAP + 1 POP3 + 2 LMTP, all asked of the one map (no cache).
        self.assertEqual(d("switchyard_map_lookups_total", map="sqlite", outcome="found"), 8)
        self.assertEqual(d("switchyard_map_lookups_total", map="sqlite", outcome="not-found"), 1)
        self.assertEqual(d("switchyard_map_lookup_duration_seconds_count", map="sqlite"), 9)
        self.assertEqual(d("switchyard_lookup_cache_total", result="miss"), 9)
        self.assertEqual(d("switchyard_backend_connect_failures_total", backend="gone"), 1)
        self.assertEqual(self.value(after, "switchyard_backend_up", backend="gone",
                                    store="127.0.0.1:%d" % self.dead_port), 0)
        self.assertEqual(self.value(after, "switchyard_backend_up", backend="store",
                                    store="127.0.0.1:%d" % self.store.imap_port), 1)
        self.assertEqual(self.value(after, "switchyard_workers", ), 2)
        self.assertEqual(self.value(after, "switchyard_holds"), 0)
        version = [dict(k[1]) for k in after if k[0] == "switchyard_build_info"]
        self.assertEqual(len(version), 1)
        self.assertTrue(version[0]["version"])

    def test_2_every_worker_answers_with_the_sum_of_all(self):
        # Many scrapes in a row land on both workers; each must show the same totals.
        c = imaplib.IMAP4(HOST, self.imap_port, timeout=10)
        c.login("ann", "ann-pw")
        c.logout()
        # Scrape until both workers have answered (the kernel picks who accepts): each
        # answer must show the same totals.
        seen = set()
        workers = set(str(w) for w in workers_of(self.proxy))
        served = set()
        for _ in range(200):
            s = self.scrape()
            seen.add((s[("switchyard_logins_total",
                          frozenset({("protocol", "imap"), ("outcome", "ok")}))],
                      s[("switchyard_map_lookups_total",
                         frozenset({("map", "sqlite"), ("outcome", "found")}))]))
            served = set(re.findall(r"\[(\d+)\]: debug: metrics: served", self.proxy.log_text()))
            if served >= workers and len(seen) > 0:
                break
        self.assertEqual(served & workers, workers, "both workers answered scrapes")
        self.assertEqual(len(seen), 1, seen)

    def test_3_live_sessions_are_gauges(self):
        base = self.scrape()
        pre = harness.LineClient(HOST, self.imap_port)
        self.addCleanup(pre.close)
        pre.readline()
        logged = imaplib.IMAP4(HOST, self.imap_port, timeout=10)
        logged.login("ann", "ann-pw")
        wait_until(lambda: self.value(self.scrape(), "switchyard_sessions", protocol="imap",
                                      phase="logged-in") == 1, 10, "one logged-in session")
        s = self.scrape()
        self.assertEqual(self.value(s, "switchyard_sessions", protocol="imap", phase="pre-login"),
                         self.value(base, "switchyard_sessions", protocol="imap",
                                    phase="pre-login") + 1)
        logged.logout()
        pre.close()
        wait_until(lambda: self.value(self.scrape(), "switchyard_sessions", protocol="imap",
                                      phase="logged-in") == 0 and
                   self.value(self.scrape(), "switchyard_sessions", protocol="imap",
                              phase="pre-login") == 0, 10, "no session left")

    def test_4_only_get_metrics_is_answered(self):
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            "http://127.0.0.1:%d/other" % self.metrics_port],
                           stdout=subprocess.PIPE, text=True, timeout=20)
        self.assertEqual(r.stdout, "404")
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                            "http://127.0.0.1:%d/metrics" % self.metrics_port],
                           stdout=subprocess.PIPE, text=True, timeout=20)
        self.assertEqual(r.stdout, "405")
        r = subprocess.run(["curl", "-s", "-I", "http://127.0.0.1:%d/metrics" % self.metrics_port],
                           stdout=subprocess.PIPE, text=True, timeout=20)
        self.assertTrue(r.stdout.startswith("HTTP/1.1 200 OK"), r.stdout)
        self.assertTrue(self.raw(b"HELLO\r\n\r\n").startswith(b"HTTP/1.1 400 "))
        self.assertTrue(self.raw(b"GET /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 "))
        # Too long: answered 400 once the limit is reached, without waiting for the end.
        self.assertTrue(self.raw(b"GET /metrics HTTP/1.0\r\nX: " + b"a" * 9000)
                        .startswith(b"HTTP/1.1 400 "))
        # Too slow: closed, unanswered, within the request timeout (5 s).
        start = time.monotonic()
        self.assertEqual(self.raw(b"GET /metrics HTTP/1.0\r\n", timeout=15), b"")
        self.assertLess(time.monotonic() - start, 10)
        self.assertGreater(self.value(self.scrape(), "switchyard_connections_accepted_total",
                                      protocol="metrics"), 0)

    def test_5_clients_outside_allow_from_are_refused(self):
        before = self.scrape()
        self.assertEqual(self.raw(b"GET /metrics HTTP/1.0\r\n\r\n", port=self.closed_port), b"")
        r = subprocess.run(["curl", "-sS", "--max-time", "10",
                            "http://127.0.0.1:%d/metrics" % self.closed_port],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stdout, "")
        harness.wait_for_log(self.proxy.log_path, r"refused 127\.0\.0\.1:\d+ \(not in allow_from\)")
        after = self.scrape()
        self.assertEqual(self.delta(before, after, "switchyard_connections_refused_total",
                                    protocol="metrics"), 2)

    def test_6_a_killed_worker_takes_nothing_back(self):
        c = imaplib.IMAP4(HOST, self.imap_port, timeout=10)
        c.login("ann", "ann-pw")
        c.logout()
        wait_until(lambda: self.value(self.scrape(), "switchyard_sessions", protocol="imap",
                                      phase="logged-in") == 0, 10, "the session to end")
        before = self.scrape()
        workers = workers_of(self.proxy)
        self.assertEqual(len(workers), 2)
        os.kill(workers[0], signal.SIGKILL)
        wait_until(lambda: len(workers_of(self.proxy)) == 2 and
                   workers[0] not in workers_of(self.proxy), 10, "a new worker")
        # The new worker counts itself once it has started (its slot, then its gauge).
        wait_until(lambda: self.value(self.scrape(), "switchyard_workers") == 2, 10,
                   "the new worker in switchyard_workers")
        after = self.scrape()
        for key, value in before.items():
            name = key[0]
            if name.endswith("_total") or name.endswith("_count") or name.endswith("_bucket"):
                self.assertGreaterEqual(after.get(key, -1), value, key)
        self.assertEqual(self.delta(before, after, "switchyard_worker_restarts_total"), 1)
        self.assertEqual(self.value(after, "switchyard_workers"), 2)


if __name__ == "__main__":
    unittest.main()
