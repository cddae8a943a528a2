"""Integration tests of the daemon around the proxy: pre-forked workers, respawn, SIGHUP
reload with draining, IPv6 and Unix-socket listeners, and the switchyard-map tool.

Real Dovecot stores on loopback, started here; everything stopped by PID.
"""

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Dovecot, LineClient, Switchyard, backend_section, imap_quote,  # noqa: E402
                     make_sqlite_map, switchyard_config, wait_until)

HOST = "127.0.0.1"


def login_ok(port, user, password, host=HOST):
    client = LineClient(host, port)
    try:
        assert client.readline().startswith(b"* OK")
        _, tagged = client.command("a", b"LOGIN " + imap_quote(user) + b" " + imap_quote(password))
        return tagged.startswith(b"a OK")
    finally:
        client.close()


workers_of = harness.workers_of


class DaemonTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-daemon-")
        os.chmod(cls.tmp, 0o755)
        cls.store1 = Dovecot("store1", os.path.join(cls.tmp, "store1"),
                             users={"ann": "ann-pw", "ben": "ben-pw"})
        cls.store2 = Dovecot("store2", os.path.join(cls.tmp, "store2"),
                             users={"ann": "ann-pw", "cid": "cid-pw"})
        cls.map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"),
                                       [("ann", "store1"), ("ben", "store1"),
                                        ("cid", "store2")])
        cls.backends = (backend_section("store1", cls.store1.imap_port)
                        + backend_section("store2", cls.store2.imap_port))

    @classmethod
    def tearDownClass(cls):
        for store in (cls.store1, cls.store2):
            store.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def proxy(self, name, workers=2, port=None, extra_listen="", ports=None):
        port = port or harness.free_port()
        config = switchyard_config(port, maps=[("sqlite", self.map_path)],
                                   backends=self.backends, workers=workers,
                                   extra=extra_listen)
        p = Switchyard(None, os.path.join(self.tmp, name), config, ports=ports)
        self.addCleanup(p.stop)
        return p

    def test_master_forks_the_configured_workers_and_respawns_a_dead_one(self):
        p = self.proxy("respawn", workers=2)
        wait_until(lambda: len(workers_of(p)) == 2, 10, "two workers")
        before = workers_of(p)
        os.kill(before[0], signal.SIGKILL)
        wait_until(lambda: len(workers_of(p)) == 2 and before[0] not in workers_of(p), 10,
                   "a respawned worker")
        self.assertIn(before[1], workers_of(p), "the other worker was left alone")
        self.assertTrue(login_ok(p.port, "ann", "ann-pw"))
        self.assertRegex(p.log_text(), r"worker %d killed by signal 9" % before[0])

    def test_workers_drop_privileges_when_started_as_root(self):
        if os.geteuid() != 0:
            self.assertTrue(True)  # nothing to drop: the rule is "ignored when not root"
            return
        p = self.proxy("privs", workers=1)
        wait_until(lambda: len(workers_of(p)) == 1, 10, "a worker")
        worker = workers_of(p)[0]

        def uid_of(pid):
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("Uid:"):
                        return [int(x) for x in line.split()[1:]]
        wait_until(lambda: uid_of(worker) != [0, 0, 0, 0], 10, "the worker to drop root")
        self.assertEqual(set(uid_of(worker)), {65534}, "worker runs as nobody")
        self.assertEqual(uid_of(p.pid)[0], 0, "master keeps root to bind and respawn")
        self.assertTrue(login_ok(p.port, "cid", "cid-pw"))

    def test_sighup_reloads_config_and_old_workers_finish_their_sessions(self):
        p = self.proxy("reload", workers=1)
        wait_until(lambda: len(workers_of(p)) == 1, 10, "a worker")
        old = workers_of(p)
        # A logged-in session on the old worker.
        client = LineClient(HOST, p.port)
        self.addCleanup(client.close)
        client.readline()
        _, tagged = client.command("a", b"LOGIN ann ann-pw")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        # New config: one more listener.
        port2 = harness.free_port()
        with open(p.conf_path, "a") as f:
            f.write('\n[[listen]]\nprotocol = "imap"\naddress = "127.0.0.1:%d"\n' % port2)
        os.kill(p.pid, signal.SIGHUP)
        harness.wait_port(HOST, port2, 10)
        wait_until(lambda: any(w not in old for w in workers_of(p)), 10, "a new worker")
        self.assertTrue(login_ok(port2, "ben", "ben-pw"))
        self.assertTrue(login_ok(p.port, "cid", "cid-pw"))
        # The old worker still serves its session, then exits when it ends.
        self.assertIn(old[0], workers_of(p))
        _, tagged = client.command("b", b"NOOP")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        client.command("c", b"LOGOUT")
        client.close()
        wait_until(lambda: old[0] not in workers_of(p), 10, "the old worker to exit")
        self.assertIn("configuration reloaded", p.log_text())

    def test_old_workers_close_their_sessions_after_drain_timeout(self):
        port = harness.free_port()
        config = switchyard_config(port, maps=[("sqlite", self.map_path)], backends=self.backends,
                                   workers=1, limits={"drain_timeout": "1s"})
        p = Switchyard(None, os.path.join(self.tmp, "drain"), config)
        self.addCleanup(p.stop)
        wait_until(lambda: len(workers_of(p)) == 1, 10, "a worker")
        old = workers_of(p)
        client = LineClient(HOST, port)
        self.addCleanup(client.close)
        client.readline()
        _, tagged = client.command("a", b"LOGIN ann ann-pw")
        self.assertTrue(tagged.startswith(b"a OK"))
        os.kill(p.pid, signal.SIGHUP)
        client.wait_eof(10.0)  # closed by the old worker once drain_timeout ran out
        wait_until(lambda: old[0] not in workers_of(p), 10, "the old worker to exit")

    def test_allow_from_refuses_other_addresses(self):
        port = harness.free_port()
        config = switchyard_config(port, maps=[("sqlite", self.map_path)], backends=self.backends,
                                   workers=1).replace(
            'address = "127.0.0.1:%d"\n' % port,
            'address = "127.0.0.1:%d"\nallow_from = ["127.0.0.1"]\n' % port)
        p = Switchyard(None, os.path.join(self.tmp, "allow"), config)
        self.addCleanup(p.stop)
        self.assertTrue(login_ok(port, "ann", "ann-pw"))
        s = socket.socket()
        self.addCleanup(s.close)
        s.settimeout(10)
        s.bind(("127.0.0.7", 0))
        s.connect((HOST, port))
        self.assertEqual(s.recv(100), b"", "closed without a greeting")
        harness.wait_for_log(p.log_path, r"refused 127\.0\.0\.7:\d+ \(not in allow_from\)", 10)

    def test_idle_timeout_ends_a_silent_logged_in_session(self):
        port = harness.free_port()
        config = switchyard_config(port, maps=[("sqlite", self.map_path)], backends=self.backends,
                                   workers=1, limits={"idle_timeout": "1s"})
        p = Switchyard(None, os.path.join(self.tmp, "idle"), config)
        self.addCleanup(p.stop)
        client = LineClient(HOST, port)
        self.addCleanup(client.close)
        client.readline()
        _, tagged = client.command("a", b"LOGIN ann ann-pw")
        self.assertTrue(tagged.startswith(b"a OK"))
        _, tagged = client.command("b", b"NOOP")  # traffic keeps it alive
        self.assertTrue(tagged.startswith(b"b OK"))
        client.wait_eof(10.0)
        harness.wait_for_log(p.log_path, r'user="ann" phase=relay reason=idle timeout', 10)

    def test_sighup_with_a_broken_config_keeps_the_running_one(self):
        p = self.proxy("badreload", workers=1)
        wait_until(lambda: len(workers_of(p)) == 1, 10, "a worker")
        old = workers_of(p)
        with open(p.conf_path, "a") as f:
            f.write("\nnot_a_key = 1\n")
        start = len(p.log_text())
        os.kill(p.pid, signal.SIGHUP)
        harness.wait_for_log(p.log_path, r"reload refused.*unknown key 'not_a_key'", 10, start)
        self.assertEqual(workers_of(p), old)
        self.assertTrue(login_ok(p.port, "ann", "ann-pw"))

    def test_ipv6_and_unix_socket_listeners(self):
        sock_path = os.path.join(self.tmp, "imap.sock")
        port6 = harness.free_port()
        extra = ('[[listen]]\nprotocol = "imap"\naddress = "[::1]:%d"\n\n'
                 '[[listen]]\nprotocol = "imap"\naddress = "unix:%s"\n' % (port6, sock_path))
        port = harness.free_port()
        p = self.proxy("listeners", workers=1, port=port, extra_listen=extra,
                       ports=[(HOST, port)])
        wait_until(lambda: self._connects6(port6), 10, "the IPv6 listener")
        c6 = socket.create_connection(("::1", port6), timeout=10)
        self.addCleanup(c6.close)
        f6 = c6.makefile("rwb")
        self.assertTrue(f6.readline().startswith(b"* OK"))
        f6.write(b"a LOGIN cid cid-pw\r\n")
        f6.flush()
        self.assertTrue(f6.readline().startswith(b"a OK"))
        wait_until(lambda: os.path.exists(sock_path), 10, "the unix socket")
        cu = socket.socket(socket.AF_UNIX)
        self.addCleanup(cu.close)
        cu.settimeout(10)
        cu.connect(sock_path)
        fu = cu.makefile("rwb")
        greeting = fu.readline()
        self.assertIn(b"AUTH=PLAIN", greeting, "a local socket counts as a trusted client")
        fu.write(b"a LOGIN ben ben-pw\r\nb SELECT INBOX\r\n")
        fu.flush()
        self.assertTrue(fu.readline().startswith(b"a OK"))

    @staticmethod
    def _connects6(port):
        try:
            socket.create_connection(("::1", port), timeout=1).close()
            return True
        except OSError:
            return False

    def test_switchyard_map_tool_answers_and_exit_codes(self):
        conf = os.path.join(self.tmp, "map-tool.conf")
        sleepmap = harness.test_module("sleepmap")
        with open(conf, "w") as f:
            f.write(switchyard_config(harness.free_port(),
                                      maps=[(sleepmap, "0"), ("sqlite", self.map_path)],
                                      backends=self.backends))
        tool = os.path.join(harness.build_dir(), "switchyard-map")

        def run(*keys):
            return subprocess.run([tool, "-c", conf] + list(keys), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=30)
        r = run("ANN")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertRegex(r.stdout, r"ANN: found key=ann user=ann backend=store1 "
                                   r"host=store1 port=- imap=127\.0\.0\.1:%d " % self.store1.imap_port)
        self.assertRegex(r.stdout, r"map=sqlite time=[0-9.]+ms")
        r = run("ann", "nobody-here")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("nobody-here: not-found", r.stdout)
        r = run("ann", "tempfail", "nobody-here")
        self.assertEqual(r.returncode, 2, r.stdout)
        self.assertRegex(r.stdout, r"tempfail: tempfail reason=\"dbserver_get: database error\"")


    # -- lookup cache -------------------------------------------------------------

    def cache_proxy(self, name, lookup):
        port = harness.free_port()
        db = make_sqlite_map(os.path.join(self.tmp, name + ".db"),
                             [("ann", "store1"), ("ben", "store1")])
        config = switchyard_config(port, maps=[("sqlite", db)], backends=self.backends,
                                   workers=1, extra="[lookup]\n" + lookup)
        p = Switchyard(None, os.path.join(self.tmp, name), config)
        self.addCleanup(p.stop)
        return p, db

    def test_stale_answers_stand_in_while_the_map_fails_and_recovery_is_automatic(self):
        p, db = self.cache_proxy("stale", 'cache_ttl = "0s"\nstale_ttl = "1h"\n')
        self.assertTrue(login_ok(p.port, "ann", "ann-pw"))
        # The map breaks: the database file is replaced by garbage.
        good = db + ".good"
        os.rename(db, good)
        with open(db + ".tmp", "wb") as f:
            f.write(b"this is not an sqlite database" * 100)
        os.rename(db + ".tmp", db)
        self.assertTrue(login_ok(p.port, "ann", "ann-pw"), "served from the stale cache")
        harness.wait_for_log(p.log_path, r'user="ann".*map=sqlite\(stale\) result=ok', 10)
        c = LineClient(HOST, p.port)
        self.addCleanup(c.close)
        c.readline()
        _, tagged = c.command("a", b"LOGIN ben ben-pw")
        self.assertTrue(tagged.startswith(b"a NO [UNAVAILABLE]"), tagged)
        os.rename(good, db)  # the map comes back
        self.assertTrue(login_ok(p.port, "ben", "ben-pw"))

    def test_not_found_answers_are_cached_for_the_negative_ttl(self):
        p, db = self.cache_proxy("negative", 'negative_ttl = "1h"\n')
        c = LineClient(HOST, p.port)
        self.addCleanup(c.close)
        c.readline()
        _, tagged = c.command("a", b"LOGIN cid cid-pw")
        self.assertTrue(tagged.startswith(b"a NO [AUTHENTICATIONFAILED]"), tagged)
        con = sqlite3.connect(db)
        con.execute("INSERT INTO tblPerdition (\"user\", servername) VALUES ('cid', 'store2')")
        con.commit()
        con.close()
        _, tagged = c.command("b", b"LOGIN cid cid-pw")
        self.assertTrue(tagged.startswith(b"b NO [AUTHENTICATIONFAILED]"), "still cached")
        harness.wait_for_log(p.log_path, r'user="cid".*map=-\(cache\) result=unknown-user', 10)


    # -- back-end health ----------------------------------------------------------

    def test_a_refusing_store_is_skipped_after_it_failed(self):
        port = harness.free_port()
        backends = (backend_section("store1", self.store1.imap_port,
                                    hosts=("127.0.0.3", "127.0.0.1"))
                    + backend_section("store2", self.store2.imap_port))
        config = switchyard_config(port, maps=[("sqlite", self.map_path)], backends=backends,
                                   workers=1)
        p = Switchyard(None, os.path.join(self.tmp, "passive"), config)
        self.addCleanup(p.stop)
        self.assertTrue(login_ok(p.port, "ann", "ann-pw"))
        harness.wait_for_log(p.log_path, r"store 127\.0\.0\.3:%d of backend store1 is down"
                             % self.store1.imap_port, 10)
        start = len(p.log_text())
        self.assertTrue(login_ok(p.port, "ben", "ben-pw"))
        line = harness.wait_for_log(p.log_path, r'imap login ok: .*user="ben".*', 10, start).group(0)
        self.assertNotIn("127.0.0.3", line, "the dead address was not tried again")

    def test_active_checks_notice_a_store_going_down_and_coming_back(self):
        store = Dovecot("checked", os.path.join(self.tmp, "checked"), users={"ann": "ann-pw"})
        self.addCleanup(store.stop)
        port = harness.free_port()
        backends = ('[backend.checked]\nhost = "127.0.0.1"\nimap = %d\n'
                    'check_interval = "200ms"\nconnect_timeout = "1s"\n' % store.imap_port)
        config = switchyard_config(port, maps=[("sqlite", self.map_path)], backends=backends,
                                   workers=1)
        p = Switchyard(None, os.path.join(self.tmp, "active"), config)
        self.addCleanup(p.stop)
        store.stop()
        harness.wait_for_log(p.log_path, r"store 127\.0\.0\.1:%d of backend checked is down"
                             % store.imap_port, 10)
        store.start()
        harness.wait_for_log(p.log_path, r"store 127\.0\.0\.1:%d of backend checked is up again"
                             % store.imap_port, 10)


    # -- switchyardctl -------------------------------------------------------------

    def test_switchyardctl_status_who_kick_flush_reload(self):
        ctl_dir = os.path.join(self.tmp, "ctl")
        pid_file = os.path.join(self.tmp, "ctl.pid")
        port = harness.free_port()
        config = switchyard_config(port, maps=[("sqlite", self.map_path)], backends=self.backends,
                                   workers=2, extra_top='control_dir = %s\npid_file = %s\n'
                                   % (harness.toml_string(ctl_dir), harness.toml_string(pid_file)))
        p = Switchyard(None, os.path.join(self.tmp, "ctl-proxy"), config)
        self.addCleanup(p.stop)
        tool = os.path.join(harness.build_dir(), "switchyardctl")

        def ctl(*args):
            return subprocess.run([tool, "-c", p.conf_path] + list(args), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=30)
        harness.wait_until(lambda: ctl("status").stdout.count("worker ") == 2, 10, "two workers")
        client = LineClient(HOST, p.port)
        self.addCleanup(client.close)
        client.readline()
        _, tagged = client.command("a", b"LOGIN ann ann-pw")
        self.assertTrue(tagged.startswith(b"a OK"))
        who = ctl("who").stdout
        self.assertRegex(who, r"\d+ imap relay client=127\.0\.0\.1:\d+ user=\"ann\" server=127")
        r = ctl("kick", "ann")
        self.assertEqual(r.stdout.strip(), "kicked 1 sessions", r.stdout)
        self.assertEqual(client.wait_eof(5.0), b"", "the kicked client sees its connection end")
        harness.wait_for_log(p.log_path, r'user="ann" phase=relay reason=kicked', 10)
        self.assertNotIn("ann", ctl("who").stdout)
        self.assertEqual(ctl("flush").stdout.strip(), "flushed 2 workers")
        self.assertEqual(ctl("reload").returncode, 0)
        harness.wait_for_log(p.log_path, r"configuration reloaded", 10)
        self.assertEqual(ctl("bogus").returncode, 64)


if __name__ == "__main__":
    unittest.main()
