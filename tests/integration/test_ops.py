"""Operating Switchyard (issue 13): checks that tell the truth, clean stops, switchyardctl.

- `switchyard -t` refuses an unknown `user`, a fallback naming no back end, a duplicate
  listen address; `switchyardctl reload` waits for the master's verdict and exits 1 with
  the reason; the service manager hears READY=1 / RELOADING=1 / STOPPING=1 on
  $NOTIFY_SOCKET; log lines to a journald stream carry `<N>` priorities.
- SIGTERM: no connection is left waiting ungreeted; logged-in IMAP gets `* BYE`, POP3
  `-ERR`; control sockets and the pid file go. A SIGKILLed master takes its workers with
  it. A killed worker gives its per-address connection slots back. After a reload the new
  drain_timeout applies to the old workers, whose cut sessions hear BYE and are logged.
- switchyardctl: --json on every command, status, who [USER] with PID:N ids, flush [USER],
  clear errors for permission denied and no daemon.

Real Dovecot store and real Switchyard processes on loopback, stopped by PID.
"""

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Dovecot, LineClient, Switchyard, make_sqlite_map,  # noqa: E402
                     toml_string, wait_for_log, wait_until)

HOST = "127.0.0.1"


def pid_alive(pid):
    """True while `pid` exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class OpsBase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-ops-")
        os.chmod(cls.tmp, 0o755)
        cls.store = Dovecot("ops", os.path.join(cls.tmp, "store"),
                            users={"ann": "ann-pw", "ben": "ben-pw"},
                            extra_conf="auth_username_format = %n\n")
        cls.map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"),
                                       [("ann@example.test", "store1"),
                                        ("ben@example.test", "store1")])

    @classmethod
    def tearDownClass(cls):
        cls.store.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, True)

    def config(self, name, listen, workers=2, top="", limits="", lookup=""):
        """A config with a control_dir and pid file under the test's own directory."""
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        self.ctl_dir = os.path.join(d, "ctl")
        self.pid_file = os.path.join(d, "switchyard.pid")
        text = ("workers = %d\nmap_dir = %s\ncontrol_dir = %s\npid_file = %s\n%s\n"
                "[log]\ntarget = \"stderr\"\nlevel = \"info\"\n\n"
                % (workers, toml_string(harness.map_dir()), toml_string(self.ctl_dir),
                   toml_string(self.pid_file), top))
        for protocol, address in listen:
            text += "[[listen]]\nprotocol = \"%s\"\naddress = \"%s\"\n\n" % (protocol, address)
        text += ("[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
                 "[username]\nstrip_domain = false\n\n"
                 "[backend.store1]\nhost = \"127.0.0.1\"\nimap = %d\npop3 = %d\nlmtp = %d\n\n"
                 % (toml_string(self.map_path), self.store.imap_port, self.store.pop3_port,
                    self.store.lmtp_port))
        if limits:
            text += "[limits]\n" + limits + "\n"
        if lookup:
            text += "[lookup]\n" + lookup + "\n"
        return text

    def start(self, name, text, **kw):
        p = Switchyard(None, os.path.join(self.tmp, name), text, **kw)
        self.addCleanup(p.stop)
        return p

    def ctl(self, proxy_or_conf, *args, user=None):
        tool = os.path.join(harness.build_dir(), "switchyardctl")
        conf = proxy_or_conf if isinstance(proxy_or_conf, str) else proxy_or_conf.conf_path
        preexec = None
        if user is not None:
            pw = pwd.getpwnam(user)

            def preexec():
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
        return subprocess.run([tool, "-c", conf] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=60,
                              preexec_fn=preexec)

    def ctl_json(self, proxy, *args):
        r = self.ctl(proxy, "--json", *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def workers(self, proxy, count):
        wait_until(lambda: len(harness.children_of(proxy.pid)) == count, 10,
                   "%d workers" % count)
        wait_until(lambda: os.path.isdir(self.ctl_dir) and
                   len([f for f in os.listdir(self.ctl_dir)
                        if f.startswith("worker-")]) == count, 10,
                   "%d worker control sockets" % count)
        return sorted(harness.children_of(proxy.pid))

    def imap_login(self, port, user="ann@example.test", password="ann-pw"):
        c = LineClient(HOST, port)
        self.addCleanup(c.close)
        self.assertTrue(c.readline().startswith(b"* OK"))
        _, tagged = c.command("a", "LOGIN %s %s" % (user, password))
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        return c


class ChecksTest(OpsBase):
    def check(self, name, text):
        path = os.path.join(self.tmp, name + ".conf")
        with open(path, "w") as f:
            f.write(text)
        return harness.check_config(path)

    def test_t_refuses_an_unknown_user(self):
        port = harness.free_port()
        ok = self.check("user-ok", self.config("u1", [("imap", "127.0.0.1:%d" % port)],
                                               top='user = "nobody"'))
        self.assertEqual(ok.returncode, 0, ok.stdout)
        r = self.check("user-bad", self.config("u2", [("imap", "127.0.0.1:%d" % port)],
                                               top='user = "no-such-account-sy13"'))
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn('user = "no-such-account-sy13": no such account', r.stdout)

    def test_t_refuses_a_fallback_naming_no_back_end(self):
        port = harness.free_port()
        listen = [("imap", "127.0.0.1:%d" % port)]
        for good in ("store1", "user@store1:143", "127.0.0.1:143", "hold", "localhost"):
            r = self.check("fb-ok", self.config("f1", listen, lookup='fallback = "%s"' % good))
            self.assertEqual(r.returncode, 0, "%s: %s" % (good, r.stdout))
        r = self.check("fb-bad", self.config("f2", listen, lookup='fallback = "store9"'))
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("'store9' is no [backend.store9] (defined: store1)", r.stdout)

    def test_t_refuses_duplicate_listen_addresses(self):
        p = harness.free_port()
        sock = os.path.join(self.tmp, "lmtp.sock")
        clashes = [
            [("imap", "127.0.0.1:%d" % p), ("pop3", "127.0.0.1:%d" % p)],
            [("imap", "*:%d" % p), ("imap", "127.0.0.1:%d" % p)],
            [("imap", "[::1]:%d" % p), ("imap", "[::]:%d" % p)],
            [("imap", "0.0.0.0:%d" % p), ("pop3", "127.0.0.2:%d" % p)],
            [("imap", "[::ffff:127.0.0.1]:%d" % p), ("imap", "[0:0:0:0:0:ffff:7f00:1]:%d" % p)],
            [("lmtp", "unix:" + sock), ("lmtp", "unix:" + sock)],
        ]
        for listen in clashes:
            r = self.check("dup", self.config("d1", listen))
            self.assertNotEqual(r.returncode, 0, "%s: %s" % (listen, r.stdout))
            self.assertRegex(r.stdout, r"is already taken by the \[\[listen\]\] at line \d+", listen)
        fine = [("imap", "127.0.0.1:%d" % p), ("imap", "[::1]:%d" % p),
                ("pop3", "127.0.0.1:%d" % (p + 1)), ("imap", "0.0.0.0:%d" % (p + 2)),
                ("imap", "[::1]:%d" % (p + 2))]
        r = self.check("dup-ok", self.config("d2", fine))
        self.assertEqual(r.returncode, 0, r.stdout)

    def test_reload_waits_for_the_verdict_and_service_manager_hears_each_step(self):
        # A fake service manager: a Unix datagram socket named by NOTIFY_SOCKET.
        notify_path = os.path.join(self.tmp, "notify.sock")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        self.addCleanup(notify.close)
        notify.settimeout(15)
        # stderr is "the journal": JOURNAL_STREAM names the log file's device and inode.
        workdir = os.path.join(self.tmp, "notify-proxy")
        os.makedirs(workdir, exist_ok=True)
        log_path = os.path.join(workdir, "switchyard.log")
        open(log_path, "ab").close()
        st = os.stat(log_path)
        port = harness.free_port()
        text = self.config("n", [("imap", "127.0.0.1:%d" % port)])
        old_env = dict(os.environ)
        os.environ["NOTIFY_SOCKET"] = notify_path
        os.environ["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
        try:
            proxy = self.start("notify-proxy", text)
        finally:
            os.environ.clear()
            os.environ.update(old_env)

        def next_message():
            return notify.recv(4096).decode()
        ready = next_message()
        self.assertIn("READY=1", ready)
        self.assertIn("MAINPID=%d" % proxy.pid, ready)
        self.workers(proxy, 2)

        r = self.ctl(proxy, "reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("reloaded", r.stdout)
        reloading = next_message()
        self.assertIn("RELOADING=1", reloading)
        self.assertRegex(reloading, r"MONOTONIC_USEC=\d+")
        self.assertIn("READY=1", next_message())

        # A config that cannot run: the reload is refused, with the reason, exit 1.
        with open(proxy.conf_path, "a") as f:
            f.write('[lookup]\nfallback = "store9"\n')
        r = self.ctl(proxy, "reload")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("reload refused", r.stderr)
        self.assertIn("store9", r.stderr)
        self.assertIn("RELOADING=1", next_message())
        self.assertIn("READY=1", next_message())
        j = self.ctl_json(proxy, "status")
        self.assertFalse(j["last_reload"]["ok"])
        self.assertIn("store9", j["last_reload"]["error"])
        r = self.ctl(proxy, "--json", "reload")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(json.loads(r.stdout)["reload"], "refused")
        self.assertIn("RELOADING=1", next_message())
        self.assertIn("READY=1", next_message())
        self.imap_login(port).close()  # still serving, on the running config

        # Errors reach the journal as errors, notices as notices.
        wait_for_log(log_path, r"(?m)^<3>\[%d\] error: reload refused" % proxy.pid, 10)
        wait_for_log(log_path, r"(?m)^<5>\[\d+\] notice: switchyard .* starting", 10)

        os.kill(proxy.pid, signal.SIGTERM)
        self.assertIn("STOPPING=1", next_message())
        proxy.process.wait(20)


class StopTest(OpsBase):
    def test_sigterm_leaves_no_connection_waiting_ungreeted(self):
        port, lmtp_port = harness.free_ports(2)
        grace = os.environ.get("SY_TEST_NO_GRACE_KEY") is None  # (for trying older builds)
        proxy = self.start("flood", self.config(
            "flood", [("imap", "127.0.0.1:%d" % port), ("lmtp", "127.0.0.1:%d" % lmtp_port)],
            limits='shutdown_grace = "20s"' if grace else ""))
        self.workers(proxy, 2)
        # An LMTP transaction in DATA keeps its worker alive through the stop: the window
        # in which a listener that still listened would take connections nobody serves.
        busy = LineClient(HOST, lmtp_port)
        self.addCleanup(busy.close)
        self.assertTrue(busy.readline().startswith(b"220"))
        busy.send(b"LHLO c.test\r\n")
        while not busy.readline().startswith(b"250 "):
            pass
        busy.send(b"MAIL FROM:<s@example.test>\r\nRCPT TO:<ann@example.test>\r\nDATA\r\n")
        for expect in (b"250", b"250", b"354"):
            self.assertTrue(busy.readline().startswith(expect))
        busy.send(b"Message-ID: <flood@test>\r\nSubject: x\r\n\r\nfirst half\r\n")
        outcomes = {"refused": 0, "greeted": 0, "reset": 0}
        hung = []
        stop = threading.Event()
        lock = threading.Lock()

        def knock():
            while not stop.is_set():
                s = socket.socket()
                s.settimeout(3)
                try:
                    s.connect((HOST, port))
                except ConnectionRefusedError:
                    with lock:
                        outcomes["refused"] += 1
                    s.close()
                    continue
                try:
                    data = s.recv(100)
                    kind = "greeted" if data.startswith((b"* OK", b"* BYE")) else "reset"
                except ConnectionResetError:
                    kind = "reset"
                except socket.timeout:
                    kind = None
                with lock:
                    if kind:
                        outcomes[kind] += 1
                    else:
                        hung.append(s.getsockname())
                s.close()

        threads = [threading.Thread(target=knock) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: outcomes["greeted"] > 50, 20, "connections greeted before the stop")
            os.kill(proxy.pid, signal.SIGTERM)
            wait_until(lambda: outcomes["refused"] > 50 or hung, 20,
                       "connections refused after the stop")
            wait_until(lambda: outcomes["refused"] > 200 or hung, 20, "more refused")
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        self.assertEqual(hung, [], "connections accepted and never greeted (%s)" % outcomes)
        # The transaction in DATA was let finish, then the daemon ended.
        self.assertTrue(proxy.running(), "still within shutdown_grace")
        busy.send(b"second half\r\n.\r\n")
        self.assertTrue(busy.readline(10).startswith(b"250 2.0.0"))
        self.assertTrue(busy.readline(10).startswith(b"421"))
        proxy.process.wait(20)

    def test_sigterm_says_goodbye_to_logged_in_sessions_and_cleans_up(self):
        imap_port, pop3_port = harness.free_ports(2)
        proxy = self.start("bye", self.config("bye", [("imap", "127.0.0.1:%d" % imap_port),
                                                      ("pop3", "127.0.0.1:%d" % pop3_port)]))
        self.workers(proxy, 2)
        self.assertTrue(os.path.exists(os.path.join(self.ctl_dir, "master.sock")))
        self.assertTrue(os.path.exists(self.pid_file))
        imap = self.imap_login(imap_port)
        idle = self.imap_login(imap_port, "ben@example.test", "ben-pw")
        idle.send(b"i IDLE\r\n")
        self.assertTrue(idle.readline().startswith(b"+ "))
        pop = LineClient(HOST, pop3_port)
        self.addCleanup(pop.close)
        self.assertTrue(pop.readline().startswith(b"+OK"))
        pop.send(b"USER ann@example.test\r\n")
        self.assertTrue(pop.readline().startswith(b"+OK"))
        pop.send(b"PASS ann-pw\r\n")
        self.assertTrue(pop.readline().startswith(b"+OK"))
        prelogin = LineClient(HOST, imap_port)
        self.addCleanup(prelogin.close)
        self.assertTrue(prelogin.readline().startswith(b"* OK"))

        started = time.monotonic()
        os.kill(proxy.pid, signal.SIGTERM)
        self.assertIn(b"* BYE", imap.wait_eof(5))
        self.assertIn(b"* BYE", idle.wait_eof(5))
        self.assertIn(b"-ERR", pop.wait_eof(5))
        self.assertIn(b"* BYE", prelogin.wait_eof(5))
        proxy.process.wait(20)
        self.assertLess(time.monotonic() - started, 8, "no session to wait for: prompt exit")
        left = [f for f in os.listdir(self.ctl_dir) if f.endswith(".sock")]
        self.assertEqual(left, [], "control sockets left behind")
        self.assertFalse(os.path.exists(self.pid_file), "pid file left behind")
        text = proxy.log_text()
        self.assertRegex(text, r'user="ann@example.test" phase=relay reason=shutdown')

    def test_a_sigkilled_master_takes_its_workers_with_it(self):
        port = harness.free_port()
        proxy = self.start("orphans", self.config("orphans", [("imap", "127.0.0.1:%d" % port)]))
        workers = self.workers(proxy, 2)
        os.kill(proxy.pid, signal.SIGKILL)
        proxy.process.wait(10)
        wait_until(lambda: not any(pid_alive(p) for p in workers), 10,
                   "the workers of a killed master are gone")
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection((HOST, port), timeout=5).close()

    def test_a_killed_worker_gives_back_its_per_address_slots(self):
        port = harness.free_port()
        text = self.config("slots", [("imap", "127.0.0.1:%d" % port)])
        text = text.replace('address = "127.0.0.1:%d"\n' % port,
                            'address = "127.0.0.1:%d"\nmax_connections_per_ip = 25\n' % port)
        proxy = self.start("slots", text)
        self.workers(proxy, 2)

        def connect_all(n):
            clients = []
            for _ in range(n):
                c = LineClient(HOST, port)
                self.addCleanup(c.close)
                clients.append((c, c.readline()))
            return clients
        first = connect_all(25)
        self.assertTrue(all(g.startswith(b"* OK") for _, g in first), first)
        # The worker holding the most of them dies by SIGKILL, with no chance to tidy up.
        sessions = self.ctl_json(proxy, "who")["sessions"]
        by_pid = {}
        for s in sessions:
            by_pid[s["pid"]] = by_pid.get(s["pid"], 0) + 1
        victim = max(by_pid, key=by_pid.get)
        self.assertGreater(by_pid[victim], 0)
        os.kill(victim, signal.SIGKILL)
        wait_for_log(proxy.log_path, r"worker %d: gave back %d per-address connection counts"
                     % (victim, by_pid[victim]), 10)
        for c, _ in first:
            c.close()
        self.workers(proxy, 2)
        # Every client has closed: 25 new ones are all admitted, the 26th is not.
        wait_until(lambda: self.ctl_json(proxy, "status")["workers"] and
                   sum(w["sessions"]["total"] for w in
                       self.ctl_json(proxy, "status")["workers"]) == 0, 10, "no sessions left")
        again = connect_all(26)
        greetings = [g for _, g in again]
        self.assertTrue(all(g.startswith(b"* OK") for g in greetings[:25]), greetings)
        self.assertIn(b"Too many connections from your address", greetings[25])

    def test_a_reload_applies_the_new_drain_timeout_to_old_workers(self):
        port = harness.free_port()
        text = self.config("drain", [("imap", "127.0.0.1:%d" % port)], workers=1,
                           limits='drain_timeout = "1h"')
        proxy = self.start("drain", text)
        old = self.workers(proxy, 1)
        imap = self.imap_login(port)
        with open(proxy.conf_path, "w") as f:
            f.write(text.replace('drain_timeout = "1h"', 'drain_timeout = "1s"'))
        r = self.ctl(proxy, "reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"* BYE", imap.wait_eof(10))
        wait_for_log(proxy.log_path, r"drain_timeout reached: closing imap session %d:\d+ relay "
                     r"client=127\.0\.0\.1:\d+ user=\"ann@example.test\"" % old[0], 10)
        wait_until(lambda: not pid_alive(old[0]), 10, "the old worker is gone")


class CtlTest(OpsBase):
    def test_status_who_flush_in_text_and_json(self):
        imap_port, lmtp_port, smap_port = harness.free_ports(3)
        proxy = self.start("ctl", self.config("ctl", [("imap", "127.0.0.1:%d" % imap_port),
                                                      ("lmtp", "127.0.0.1:%d" % lmtp_port),
                                                      ("socketmap", "127.0.0.1:%d" % smap_port)]))
        workers = self.workers(proxy, 2)
        a = self.imap_login(imap_port, "Ann@Example.TEST")
        b = self.imap_login(imap_port, "ben@example.test", "ben-pw")
        lmtp = LineClient(HOST, lmtp_port)
        self.addCleanup(lmtp.close)
        self.assertTrue(lmtp.readline().startswith(b"220"))
        lmtp.send(b"LHLO c.test\r\n")
        while not lmtp.readline().startswith(b"250 "):
            pass
        lmtp.send(b"MAIL FROM:<s@example.test>\r\nRCPT TO:<ann@example.test>\r\n")
        self.assertTrue(lmtp.readline().startswith(b"250"))
        self.assertTrue(lmtp.readline().startswith(b"250"))

        st = self.ctl_json(proxy, "status")
        self.assertRegex(st["version"], r"^\d")
        self.assertEqual(st["pid"], proxy.pid)
        self.assertGreaterEqual(st["uptime_seconds"], 0)
        self.assertEqual(st["config"], proxy.conf_path)
        self.assertEqual([(l["protocol"], l["address"]) for l in st["listeners"]],
                         [("imap", "127.0.0.1:%d" % imap_port),
                          ("lmtp", "127.0.0.1:%d" % lmtp_port),
                          ("socketmap", "127.0.0.1:%d" % smap_port)])
        self.assertEqual(sorted(w["pid"] for w in st["workers"]), workers)
        self.assertFalse(any(w["draining"] for w in st["workers"]))
        imap_in = sum(w["sessions"]["by_protocol"].get("imap", {}).get("logged-in", 0)
                      for w in st["workers"])
        self.assertEqual(imap_in, 2)
        self.assertEqual(sum(w["sessions"]["by_protocol"].get("lmtp", {}).get(
            "lmtp-transaction", 0) for w in st["workers"]), 1)
        self.assertIn("entries", st["workers"][0]["cache"])
        self.assertEqual([(b["backend"], b["host"], b["up"]) for b in st["backends"]],
                         [("store1", "127.0.0.1", True)])
        self.assertEqual(st["holds"], [])
        text = self.ctl(proxy, "status").stdout
        self.assertIn("config %s" % proxy.conf_path, text)
        self.assertIn("listening: imap 127.0.0.1:%d" % imap_port, text)
        self.assertEqual(text.count("worker "), 2, text)
        self.assertIn("backend store1 127.0.0.1 up", text)

        who = self.ctl_json(proxy, "who")["sessions"]
        ids = [s["id"] for s in who]
        self.assertEqual(len(ids), len(set(ids)), ids)
        for s in who:
            self.assertEqual(s["id"].split(":")[0], str(s["pid"]))
            self.assertIn(s["pid"], workers)
        lm = [s for s in who if s["protocol"] == "lmtp"]
        self.assertEqual(len(lm), 1, who)
        self.assertEqual(lm[0]["from"], "s@example.test")
        self.assertEqual(lm[0]["to"], ["ann@example.test"])
        # who USER: by map key, whatever the spelling.
        ann = self.ctl_json(proxy, "who", "ANN@example.test")
        self.assertEqual(ann["key"], "ann@example.test")
        self.assertEqual(sorted(s["protocol"] for s in ann["sessions"]), ["imap", "lmtp"])
        self.assertEqual([s["user"] for s in ann["sessions"] if s["protocol"] == "imap"],
                         ["Ann@Example.TEST"])
        text = self.ctl(proxy, "who", "ann@example.test").stdout
        self.assertRegex(text, r"(?m)^\d+:\d+ imap relay client=127\.0\.0\.1:\d+ "
                               r"user=\"Ann@Example.TEST\" server=127\S+ key=\"ann@example.test\"$")
        self.assertRegex(text, r"(?m)^\d+:\d+ lmtp transaction client=\S+ "
                               r"from=\"s@example.test\" to=\"ann@example.test\"")
        self.assertNotIn("ben", text)

        self.assertEqual(self.ctl_json(proxy, "flush", "Ann@example.test"),
                         {"flushed": "ann@example.test", "workers": 2})
        self.assertEqual(self.ctl(proxy, "flush").stdout.strip(), "flushed 2 workers")
        self.assertEqual(self.ctl_json(proxy, "flush"), {"flushed": "all", "workers": 2})
        self.assertEqual(self.ctl_json(proxy, "kick", "BEN@example.test"),
                         {"key": "ben@example.test", "kicked": 1, "workers": 2})
        self.assertEqual(b.wait_eof(5), b"")
        a.close()

    def test_single_process_mode_has_status_but_no_reload(self):
        port = harness.free_port()
        proxy = self.start("single", self.config("single", [("imap", "127.0.0.1:%d" % port)],
                                                 workers=0))
        wait_until(lambda: os.path.isdir(self.ctl_dir) and
                   any(f.startswith("worker-") for f in os.listdir(self.ctl_dir)), 10,
                   "the control socket")
        st = self.ctl_json(proxy, "status")
        self.assertEqual(st["pid"], proxy.pid)
        self.assertEqual(st["config"], proxy.conf_path)
        self.assertEqual(len(st["workers"]), 1)
        r = self.ctl(proxy, "reload")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no reload in single-process mode", r.stderr)
        r = self.ctl(proxy, "stop")
        self.assertEqual(r.returncode, 0, r.stderr)
        proxy.process.wait(20)

    def test_clear_errors_for_permission_and_no_daemon(self):
        port = harness.free_port()
        proxy = self.start("perm", self.config("perm", [("imap", "127.0.0.1:%d" % port)]))
        self.workers(proxy, 2)
        os.chmod(proxy.conf_path, 0o644)
        for args in (["status"], ["who"], ["reload"]):
            r = self.ctl(proxy, *args, user="nobody")
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertIn("permission denied: %s/" % self.ctl_dir, r.stderr)
            self.assertIn("run as root", r.stderr)
        proxy.stop()
        # With control_group, its members may; the others are told which group it is.
        port = harness.free_port()
        proxy = self.start("group", self.config("group", [("imap", "127.0.0.1:%d" % port)],
                                                top='control_group = "nogroup"'))
        self.workers(proxy, 2)
        os.chmod(proxy.conf_path, 0o644)
        st = self.ctl(proxy, "--json", "status", user="nobody")
        self.assertEqual(st.returncode, 0, st.stderr)
        self.assertEqual(len(json.loads(st.stdout)["workers"]), 2)
        r = self.ctl(proxy, "hold", "ann@example.test", user="nobody")
        self.assertEqual(r.returncode, 1)
        self.assertIn("hold and release rewrite it: run as root", r.stderr)
        r = self.ctl(proxy, "who", user="daemon")
        self.assertEqual(r.returncode, 1)
        self.assertIn("(run as root or a member of group nogroup)", r.stderr)
        proxy.stop()
        for args in (["status"], ["who"], ["reload"], ["flush"]):
            r = self.ctl(proxy, *args)
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertIn("no switchyard running (no control socket at %s/master.sock)"
                          % self.ctl_dir, r.stderr)
        r = self.ctl(proxy, "--json", "status")
        self.assertIn("no switchyard running", json.loads(r.stdout)["error"])


if __name__ == "__main__":
    unittest.main()
