"""Concurrent directory lookups (issue 11): each worker asks its maps several questions at
once ([lookup] concurrency), so a slow or hung directory holds up only the logins that
wait for it; a module that does not declare itself thread-safe is still called one lookup
at a time; the shipped ldap and pgsql modules keep a connection per concurrent lookup.

Real Dovecot, slapd and PostgreSQL on loopback; the directory with a fixed latency is the
test module tests/modules/latencymap (see its header).
"""

import os
import re
import shutil
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Dovecot, LineClient, Switchyard, backend_section  # noqa: E402
from postgres import Postgres  # noqa: E402
from slapd import Slapd  # noqa: E402

HOST = "127.0.0.1"
USERS = {"together%d" % i: "pw" for i in range(1, 9)}
USERS.update({"user%d" % i: "pw" for i in range(1, 17)})
USERS.update({"hang%d" % i: "pw" for i in range(1, 5)})


def login(port, user, password="pw", timeout=20):
    """The tagged reply to LOGIN."""
    with LineClient(HOST, port, timeout=timeout) as c:
        c.readline()
        _, tagged = c.command("a", b"LOGIN %s %s" % (user.encode(), password.encode()),
                              timeout=timeout)
        return tagged


def logins_at_once(port, users, timeout=20):
    """Logs every user in at the same time; {user: tagged reply}."""
    replies = {}
    barrier = threading.Barrier(len(users))

    def one(user):
        barrier.wait(timeout)
        try:
            replies[user] = login(port, user, timeout=timeout)
        except Exception as e:  # noqa: BLE001 - reported in the assertion
            replies[user] = repr(e).encode()

    threads = [threading.Thread(target=one, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    return replies


def proxy_config(port, module, options, store_port, concurrency=None, timeout="8s"):
    extra = ("[lookup]\ntimeout = %s\ncache_size = 1000\nper_client_limit = 64\n"
             % harness.toml_string(timeout))
    if concurrency is not None:
        extra += "concurrency = %d\n" % concurrency
    return harness.switchyard_config(
        port, maps=[(module, options)], backends=backend_section("store1", store_port),
        workers=1, level="info", limits={"auth_failure_delay": "0s"}, extra=extra)


class LatencyMapTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_workdir("switchyard-lookupc-")
        cls.store = Dovecot("lc", os.path.join(cls.tmp, "store"), users=USERS)
        cls.proxies = []

    @classmethod
    def tearDownClass(cls):
        for p in cls.proxies:
            p.stop()
        cls.store.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def start_proxy(self, name, module, options, **kw):
        port = harness.free_port()
        proxy = Switchyard(None, os.path.join(self.tmp, name),
                           proxy_config(port, module, options, self.store.imap_port, **kw))
        self.proxies.append(proxy)
        return proxy, port

    def test_lookups_of_one_worker_run_side_by_side(self):
        # Each "together" lookup waits (5 s at most) until all eight are inside the module
        # at once: one lookup at a time, every one would fail.
        _, port = self.start_proxy("together", harness.test_module("latencymap"),
                                   "0;store1;8")
        replies = logins_at_once(port, ["together%d" % i for i in range(1, 9)])
        for user, tagged in replies.items():
            self.assertTrue(tagged.startswith(b"a OK"), (user, tagged))

    def test_concurrency_one_asks_one_question_at_a_time(self):
        _, port = self.start_proxy("one", harness.test_module("latencymap"),
                                       "0;store1;2", concurrency=1)
        replies = logins_at_once(port, ["together1", "together2"])
        for tagged in replies.values():
            self.assertTrue(tagged.startswith(b"a NO [UNAVAILABLE]"), replies)

    def test_a_module_that_is_not_thread_safe_is_never_called_twice_at_once(self):
        # latencymap_unsafe answers a database error to a lookup that finds another one
        # inside it; 50 ms per lookup makes overlaps certain if the host allowed them.
        _, port = self.start_proxy("unsafe", harness.test_module("latencymap_unsafe"),
                                   "50;store1")
        replies = logins_at_once(port, ["user%d" % i for i in range(1, 9)])
        for user, tagged in replies.items():
            self.assertTrue(tagged.startswith(b"a OK"), (user, tagged))

    def test_hung_lookups_hold_up_only_their_own_logins(self):
        # Four logins whose lookups hang (30 s, past the 8 s lookup timeout) take four
        # lookup threads; sixteen other users, each 20 ms away in the same map, log in
        # meanwhile, and so does a user answered from the cache.
        proxy, port = self.start_proxy("hung", harness.test_module("latencymap"),
                                       "20;store1")
        self.assertTrue(login(port, "user16").startswith(b"a OK"))  # now cached
        hung = []
        try:
            for i in range(1, 5):
                c = LineClient(HOST, port, timeout=20)
                c.readline()
                c.send(b"h LOGIN hang%d pw\r\n" % i)
                hung.append(c)
            start = len(proxy.log_text())
            began = time.monotonic()
            replies = logins_at_once(port, ["user%d" % i for i in range(1, 16)])
            took = time.monotonic() - began
            for user, tagged in replies.items():
                self.assertTrue(tagged.startswith(b"a OK"), (user, tagged))
            self.assertTrue(login(port, "user16").startswith(b"a OK"))
            # Well inside the 8 s the hung lookups are allowed: nobody queued behind them.
            self.assertLess(took, 6.0)
            self.assertNotIn("lookup timed out", proxy.log_text()[start:])
            # The hung ones end as temporary failures at their deadline.
            for c in hung:
                line = c.readline(timeout=15)
                self.assertTrue(line.startswith(b"h NO [UNAVAILABLE]"), line)
        finally:
            for c in hung:
                c.close()


class ShippedModulesTest(unittest.TestCase):
    """ldap and pgsql: one connection per concurrent lookup."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_workdir("switchyard-lookupc-db-")
        cls.store = Dovecot("lcdb", os.path.join(cls.tmp, "store"), users=USERS)
        cls.servers = [cls.store]

    @classmethod
    def tearDownClass(cls):
        for s in reversed(cls.servers):
            s.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_ldap_lookups_waiting_on_a_stopped_directory_each_have_a_connection(self):
        slapd = Slapd(os.path.join(self.tmp, "slapd"))
        self.servers.append(slapd)
        for i in range(1, 9):
            slapd.add_popmap("user%d" % i, mailhost="store1")
        port = harness.free_port()
        proxy = Switchyard(None, os.path.join(self.tmp, "proxy-ldap"), proxy_config(
            port, "ldap", slapd.map_options(extensions="x-timeout=20"), self.store.imap_port,
            timeout="15s"))
        self.servers.append(proxy)
        self.assertTrue(login(port, "user8").startswith(b"a OK"))
        accepts = len(re.findall(r"ACCEPT from", slapd.log_text()))
        os.kill(slapd.pid, signal.SIGSTOP)
        clients = []
        try:
            for i in range(1, 5):
                c = LineClient(HOST, port, timeout=20)
                c.readline()
                c.send(b"a LOGIN user%d pw\r\n" % i)
                clients.append(c)
            # Four lookups are on their way to the stopped directory; the cached user
            # still logs in meanwhile.
            harness.wait_until(lambda: proxy.log_text().count("login ok") >= 1, 5)
            self.assertTrue(login(port, "user8").startswith(b"a OK"))
        finally:
            os.kill(slapd.pid, signal.SIGCONT)
        for c in clients:
            line = c.readline(timeout=20)
            self.assertTrue(line.startswith(b"a OK"), line)
            c.close()
        # Each waiting lookup had opened a connection of its own.
        harness.wait_until(
            lambda: len(re.findall(r"ACCEPT from", slapd.log_text())) >= accepts + 3, 10,
            "slapd accepting a connection per concurrent lookup")

    def test_pgsql_lookups_run_on_several_sessions_at_once(self):
        pg = Postgres(os.path.join(self.tmp, "pg"))
        self.servers.append(pg)
        for i in range(1, 9):
            pg.sql("INSERT INTO tblperdition (\"user\", servername) VALUES ('user%d', 'store1');"
                   % i)
        query = 'SELECT servername FROM tblperdition, pg_sleep(1) WHERE "user" = $1::text'
        port = harness.free_port()
        proxy = Switchyard(None, os.path.join(self.tmp, "proxy-pg"), proxy_config(
            port, "pgsql", pg.uri(";query=" + query), self.store.imap_port, timeout="15s"))
        self.servers.append(proxy)
        result = {}

        def run():
            result.update(logins_at_once(port, ["user%d" % i for i in range(1, 7)]))

        t = threading.Thread(target=run)
        t.start()
        try:
            # Several sessions sleep in the lookup statement at the same moment.
            harness.wait_until(
                lambda: int(pg.sql("SELECT count(*) FROM pg_stat_activity WHERE state = "
                                   "'active' AND query LIKE '%pg_sleep(1)%' AND "
                                   "usename = 'perdition';", db="postgres").strip() or 0) >= 3,
                10, "three lookups in PostgreSQL at once")
        finally:
            t.join(30)
        for user, tagged in result.items():
            self.assertTrue(tagged.startswith(b"a OK"), (user, tagged))


if __name__ == "__main__":
    unittest.main()
