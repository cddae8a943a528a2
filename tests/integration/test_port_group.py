"""Integration tests of the per-worker listening sockets (reuseport, the default for TCP
listeners): one socket per worker in the kernel's port group, every worker serving from
its own, a second daemon still refused the port, reloads that change the number of
workers, a reload that switches reuseport refused, and a dead worker's socket served again
by its successor.

Real Dovecot store on loopback, started here; everything stopped by PID.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Dovecot, LineClient, Switchyard, backend_section,  # noqa: E402
                     make_sqlite_map, switchyard_config, wait_until)

HOST = "127.0.0.1"


def listening_sockets(port):
    """Inodes of the TCP sockets listening on `port` (v4 and v6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, state, inode = fields[1], fields[3], fields[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        found.add(inode)
        except OSError:
            pass
    return found


def socket_inodes(pid):
    """Inodes of the sockets process `pid` has open."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    return inodes


def login(port, user="ann", password="ann-pw"):
    """Logs in and out; returns the tagged LOGIN answer."""
    with LineClient(HOST, port) as client:
        assert client.readline().startswith(b"* OK")
        _, tagged = client.command("a", b"LOGIN %s %s" % (user.encode(), password.encode()))
        client.command("b", b"LOGOUT")
        return tagged


class PortGroupTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-portgroup-")
        os.chmod(cls.tmp, 0o755)
        cls.store = Dovecot("store", os.path.join(cls.tmp, "store"), users={"ann": "ann-pw"})
        cls.map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"), [("ann", "store")])
        cls.backends = backend_section("store", cls.store.imap_port)

    @classmethod
    def tearDownClass(cls):
        cls.store.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def proxy(self, name, workers, reuseport=None, port=None):
        port = port or harness.free_port()
        config = switchyard_config(port, maps=[("sqlite", self.map_path)],
                                   backends=self.backends, workers=workers)
        if reuseport is not None:
            config = self.set_reuseport(config, reuseport)
        p = Switchyard(None, os.path.join(self.tmp, name), config)
        self.addCleanup(p.stop)
        wait_until(lambda: len(harness.workers_of(p)) == max(workers, 1), 10,
                   "%d workers" % workers)
        return p

    @staticmethod
    def set_reuseport(config, on):
        # The first [[listen]] is the IMAP one switchyard_config writes.
        return config.replace('protocol = "imap"\n',
                              'protocol = "imap"\nreuseport = %s\n' % ("true" if on else "false"),
                              1)

    def rewrite(self, p, workers=None, reuseport=None):
        with open(p.conf_path) as f:
            text = f.read()
        if workers is not None:
            text = re.sub(r"(?m)^workers = \d+$", "workers = %d" % workers, text)
        if reuseport is not None:
            text = self.set_reuseport(re.sub(r"(?m)^reuseport = \w+\n", "", text), reuseport)
        with open(p.conf_path, "w") as f:
            f.write(text)

    def served_by(self, p, count):
        """Logs in `count` times; returns {worker pid: logins} from the log."""
        start = len(p.log_text())
        for _ in range(count):
            self.assertTrue(login(p.port).startswith(b"a OK"))
        line = re.compile(r"\[(\d+)\]: info: imap login ok")
        wait_until(lambda: len(line.findall(p.log_text()[start:])) >= count, 10,
                   "%d login lines" % count)
        pids = line.findall(p.log_text()[start:])
        by = {}
        for pid in pids:
            by[int(pid)] = by.get(int(pid), 0) + 1
        return by

    def test_each_worker_accepts_on_a_socket_of_its_own(self):
        p = self.proxy("own", workers=2)
        group = listening_sockets(p.port)
        self.assertEqual(len(group), 2, "one listening socket per worker")
        workers = harness.workers_of(p)
        # The master holds all of them; each worker its own one only.
        self.assertTrue(group <= socket_inodes(p.pid))
        held = [group & socket_inodes(w) for w in workers]
        self.assertEqual([len(h) for h in held], [1, 1], held)
        self.assertNotEqual(held[0], held[1])
        # 40 logins from 40 source ports: the kernel spreads them over both sockets.
        by = self.served_by(p, 40)
        self.assertEqual(set(by), set(workers), by)

    def test_reuseport_false_keeps_one_socket_for_all_workers(self):
        p = self.proxy("shared", workers=2, reuseport=False)
        self.assertEqual(len(listening_sockets(p.port)), 1)
        self.assertEqual(sum(self.served_by(p, 6).values()), 6)

    def test_a_second_daemon_cannot_share_the_port(self):
        p = self.proxy("first", workers=2)
        config = switchyard_config(p.port, maps=[("sqlite", self.map_path)],
                                   backends=self.backends, workers=2)
        workdir = os.path.join(self.tmp, "second")
        os.makedirs(workdir)
        conf = os.path.join(workdir, "switchyard.conf")
        with open(conf, "w") as f:
            f.write(config)
        second = subprocess.Popen([harness.switchyard_binary(), "-f", "-c", conf],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = second.communicate(timeout=30)
        finally:
            if second.poll() is None:
                os.killpg(second.pid, signal.SIGKILL)
                second.wait()
        self.assertNotEqual(second.returncode, 0, out)
        self.assertIn("Address already in use", out)
        self.assertEqual(len(listening_sockets(p.port)), 2, "the first one's group is intact")
        self.assertTrue(login(p.port).startswith(b"a OK"))

    def test_reload_grows_and_shrinks_the_group_with_the_workers(self):
        p = self.proxy("resize", workers=2)
        self.rewrite(p, workers=3)
        os.kill(p.pid, signal.SIGHUP)
        wait_until(lambda: len(listening_sockets(p.port)) == 3, 10, "three sockets")
        harness.wait_for_log(p.log_text, r"configuration reloaded: 3 workers", 10)
        self.assertEqual(sum(self.served_by(p, 20).values()), 20)
        self.rewrite(p, workers=1)
        os.kill(p.pid, signal.SIGHUP)
        wait_until(lambda: len(listening_sockets(p.port)) == 1, 10, "one socket")
        harness.wait_for_log(p.log_text, r"configuration reloaded: 1 workers", 10)
        wait_until(lambda: len(harness.workers_of(p)) == 1, 10, "the old workers to go")
        by = self.served_by(p, 10)
        self.assertEqual(list(by), harness.workers_of(p), by)

    def test_connections_waiting_on_a_socket_the_reload_sheds_get_a_goodbye(self):
        p = self.proxy("shed", workers=2)
        old = harness.workers_of(p)
        # Nobody accepts: the connections wait in the kernel's queues of both sockets.
        for w in old:
            os.kill(w, signal.SIGSTOP)
        resumed = []

        def resume():
            for w in old:
                if w not in resumed:
                    os.kill(w, signal.SIGCONT)
                    resumed.append(w)
        self.addCleanup(resume)
        waiting = []
        for _ in range(16):
            c = LineClient(HOST, p.port)
            self.addCleanup(c.close)
            waiting.append(c)
        self.rewrite(p, workers=1)
        os.kill(p.pid, signal.SIGHUP)
        harness.wait_for_log(p.log_text, r"configuration reloaded: 1 workers", 10)
        # Slot 0's socket stays and its new worker greets; slot 1's is shed: what waited
        # there is answered by the master and closed, never left hanging or reset.
        first = [c.readline(10) for c in waiting]
        resume()
        bye = [l for l in first if l.startswith(b"* BYE Server shutting down")]
        greeted = [l for l in first if l.startswith(b"* OK")]
        self.assertEqual(len(bye) + len(greeted), len(waiting), first)
        self.assertTrue(bye and greeted, first)  # 16 connections: both sockets had some
        for c, line in zip(waiting, first):
            if line.startswith(b"* BYE"):
                self.assertEqual(c.wait_eof(5.0), b"")

    def test_a_reload_that_cannot_bind_changes_nothing(self):
        p = self.proxy("nobind", workers=2)
        workers = harness.workers_of(p)
        # More workers (the group would grow) and a listener on a port someone else holds.
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind((HOST, 0))
        taken.listen(1)
        self.rewrite(p, workers=3)
        with open(p.conf_path, "a") as f:
            f.write('\n[[listen]]\nprotocol = "pop3"\naddress = "127.0.0.1:%d"\n'
                    % taken.getsockname()[1])
        os.kill(p.pid, signal.SIGHUP)
        harness.wait_for_log(p.log_text, r"reload refused.*cannot listen on 127\.0\.0\.1:%d"
                             % taken.getsockname()[1], 10)
        self.assertEqual(len(listening_sockets(p.port)), 2, "the group did not grow")
        self.assertEqual(harness.workers_of(p), workers)
        by = self.served_by(p, 20)
        self.assertEqual(set(by), set(workers), by)

    def test_a_reload_that_switches_reuseport_is_refused(self):
        p = self.proxy("toggle", workers=2)
        workers = harness.workers_of(p)
        self.rewrite(p, reuseport=False)
        os.kill(p.pid, signal.SIGHUP)
        harness.wait_for_log(p.log_text, r"reload refused.*reuseport changed: that takes a "
                             r"restart", 10)
        self.assertEqual(harness.workers_of(p), workers)
        self.assertEqual(len(listening_sockets(p.port)), 2)
        self.assertTrue(login(p.port).startswith(b"a OK"))

    def test_a_dead_workers_successor_serves_its_socket(self):
        p = self.proxy("respawn", workers=2)
        dead = harness.workers_of(p)[0]
        os.kill(dead, signal.SIGKILL)
        wait_until(lambda: len(harness.workers_of(p)) == 2 and dead not in harness.workers_of(p),
                   10, "a successor")
        by = self.served_by(p, 40)
        self.assertEqual(set(by), set(harness.workers_of(p)), by)


if __name__ == "__main__":
    unittest.main()
