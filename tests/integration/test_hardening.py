"""Attacks from the open Internet (issue 12), each reproduced against a running Switchyard
and shown bounded:

- Half a PROXY v2 header from a trusted proxy address, then a close (or silence): the session
  ends at once on the close, at login_timeout otherwise, and the worker sleeps meanwhile
  instead of polling the socket.
- A tag the store answers untagged ("a]" is a valid IMAP tag that Dovecot refuses with an
  untagged BAD): the store never sees the client's tag, the client still gets its own tag
  back, and a store that answers the login with an untagged BAD or BYE ends the login at once
  instead of pinning a store connection until the back end's login_timeout.
- Locking out an address of the attacker's choosing: failed logins from an address that
  collided with another in the per-address table (under the old unkeyed hash) no longer
  block that other address.

Real Dovecot and a real Switchyard on loopback; the scriptable fake store where a store must
misbehave. Every process is stopped by PID.
"""

import os
import shutil
import socket
import struct
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from fakestore import FakeStore  # noqa: E402
from harness import Dovecot, LineClient, Switchyard, make_sqlite_map, toml_string  # noqa: E402

HOST = "127.0.0.1"
ATTACKERS = 50
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wakeups(pid):
    """How many times the process has gone to sleep and been woken (context switches)."""
    total = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


# TCP states of /proc/net/tcp in which our end of a connection is still held open.
_HELD_STATES = {"01": "ESTABLISHED", "08": "CLOSE_WAIT"}


def connections_to(port):
    """Sockets on this host connected to 127.0.0.1:`port` and still open on our side."""
    count = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if int(remote.split(":")[1], 16) == port and state in _HELD_STATES:
                count += 1
    return count


def unread_bytes(local_port, remote_port):
    """Bytes queued unread on our socket 127.0.0.1:local_port <- :remote_port (None: none)."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if (int(fields[1].split(":")[1], 16) == local_port
                    and int(fields[2].split(":")[1], 16) == remote_port):
                return int(fields[4].split(":")[1], 16)
    return None


def v2_header(src, dst, sport, dport):
    """A complete PROXY v2 header for a TCP4 connection."""
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def old_slot(scope, address, slots=65536):
    """The per-address table's slot before the fix: unkeyed FNV-1a mod 65536."""
    h = 1469598103934665603 ^ scope
    for c in address.encode():
        h ^= c
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h % slots


def colliding_loopback(victim):
    """A 127/8 address that shared `victim`'s penalty slot under the old hash."""
    target = old_slot(0, victim)
    for n in range(2, 1 << 24):
        candidate = "127.%d.%d.%d" % (n >> 16, (n >> 8) & 255, n & 255)
        if candidate != victim and old_slot(0, candidate) == target:
            return candidate
    raise AssertionError("no collision in 127/8")


def client_from(source_ip, port, timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source_ip, 0))
    s.connect((HOST, port))
    return s


class HardeningTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-hardening-")
        os.chmod(cls.tmp, 0o755)
        cls.store = Dovecot("hard", os.path.join(cls.tmp, "store"), users={"ann": "ann-pw"})
        cls.map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"),
                                       [("ann", "dovecot"), ("fay", "fake")])

    @classmethod
    def tearDownClass(cls):
        cls.store.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def proxy(self, name, listen="", limits="", fake_port=None):
        """A Switchyard (workers = 0: the process is the worker) in front of the Dovecot,
        and of a fake store when `fake_port` is given. The back ends' login_timeout is long,
        so that whatever ends a store login early is not that backstop."""
        port = harness.free_port()
        config = ("workers = 0\nmap_dir = %s\n[log]\ntarget = \"stderr\"\nlevel = \"info\"\n\n"
                  "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:%d\"\n%s\n"
                  "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
                  "[limits]\n%s\n"
                  "[backend.dovecot]\nhost = \"127.0.0.1\"\nimap = %d\nlogin_timeout = \"30s\"\n\n"
                  "[backend.fake]\nhost = \"127.0.0.1\"\nimap = %d\nlogin_timeout = \"30s\"\n"
                  % (toml_string(harness.map_dir()), port, listen, toml_string(self.map_path),
                     limits, self.store.imap_port, fake_port or self.store.imap_port))
        p = Switchyard(None, os.path.join(self.tmp, "%s-%d" % (name, port)), config)
        self.addCleanup(p.stop)
        # The harness's probe of the port is session 1: done with it, the worker is at rest.
        harness.wait_for_log(p.log_path, r"imap session 1 closed", 10)
        return p

    def closed_lines(self, p, start, reason, user=None):
        text = p.log_text()[start:]
        return [l for l in text.splitlines() if " closed: " in l and "reason=" + reason in l
                and (user is None or 'user="%s"' % user in l)]

    def assert_idle(self, p, what, seconds=2.0):
        """The worker sleeps through `seconds`: nothing polls. An idle worker uses no clock
        tick and wakes a few times at most; 50 sessions polling every 5 ms used 2-4 % of a
        CPU and woke the worker about 200 times a second."""
        cpu, woken = cpu_seconds(p.pid), wakeups(p.pid)
        time.sleep(seconds)  # a measuring interval, not a synchronisation
        cpu, woken = cpu_seconds(p.pid) - cpu, wakeups(p.pid) - woken
        sys.stderr.write("\n  %s: worker CPU %.3f s and %d wake-ups in %.1f s\n"
                         % (what, cpu, woken, seconds))
        self.assertLess(woken, 20 * seconds, "%s: the worker woke %d times in %.1f s"
                        % (what, woken, seconds))
        self.assertLess(cpu, 0.02 * seconds + 0.001, "%s: the worker used %.2f s of CPU in "
                        "%.1f s" % (what, cpu, seconds))
        return cpu

    # -- 1. half a PROXY v2 header ---------------------------------------------------

    PROXIED = 'proxy_protocol = true\ntrusted_proxies = ["127.0.0.0/8"]\n'

    def test_half_proxy_header_then_close_ends_the_session_at_once(self):
        p = self.proxy("pp-close", listen=self.PROXIED, limits='login_timeout = "2s"\n')
        fds = fd_count(p.pid)
        start = len(p.log_text())
        half = v2_header("192.0.2.7", "127.0.0.1", 40000, 143)[:17]
        sent = time.monotonic()
        for _ in range(ATTACKERS):
            s = socket.create_connection((HOST, p.port), timeout=10)
            s.sendall(half)
            s.close()
        # Ended by the close, not by the login timeout (2 s) nor never.
        harness.wait_until(
            lambda: len(self.closed_lines(p, start, "closed during the PROXY header"))
            == ATTACKERS, 5, "%d sessions ended by the peer's close" % ATTACKERS)
        took = time.monotonic() - sent
        harness.wait_until(lambda: fd_count(p.pid) <= fds, 5, "the sessions' descriptors closed")
        self.assert_idle(p, "after the closes")
        sys.stderr.write("\n  %d half headers then close: all ended within %.2f s of the "
                         "first being sent\n" % (ATTACKERS, took))

    def test_half_proxy_header_held_open_ends_at_login_timeout(self):
        p = self.proxy("pp-hold", listen=self.PROXIED, limits='login_timeout = "2s"\n')
        fds = fd_count(p.pid)
        start = len(p.log_text())
        half = v2_header("192.0.2.7", "127.0.0.1", 40000, 143)[:17]
        held = []
        for _ in range(ATTACKERS):
            s = socket.create_connection((HOST, p.port), timeout=10)
            self.addCleanup(s.close)
            s.sendall(half)
            held.append(s)
        sent = time.monotonic()
        harness.wait_until(lambda: fd_count(p.pid) >= fds + ATTACKERS, 5, "all accepted")
        # While the partial headers wait, the worker must wait too, not poll.
        used = self.assert_idle(p, "while %d partial headers wait" % ATTACKERS, seconds=1.5)
        for s in held:
            s.settimeout(max(0.1, sent + 5.0 - time.monotonic()))
            try:
                self.assertEqual(s.recv(100), b"", "no greeting before the PROXY header")
            except ConnectionResetError:
                pass
            except socket.timeout:
                self.fail("a session with half a PROXY header outlived login_timeout (2 s) "
                          "by 3 s")
        took = time.monotonic() - sent
        self.assertEqual(len(self.closed_lines(p, start, "login timeout")), ATTACKERS)
        sys.stderr.write("\n  %d half headers held open: CPU %.3f s in 1.5 s; all closed "
                         "%.2f s after sending (login_timeout 2 s)\n" % (ATTACKERS, used, took))

    def test_proxy_header_in_pieces_still_works(self):
        p = self.proxy("pp-split", listen=self.PROXIED + "allow_plaintext_auth = true\n")
        header = v2_header("192.0.2.9", "127.0.0.1", 40009, 143)
        c = LineClient(HOST, p.port)
        self.addCleanup(c.close)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Each piece is taken off the socket before the next is sent (the reader keeps
        # no byte of the header queued), then the rest comes with the first command.
        me = c.sock.getsockname()[1]
        for piece in (header[:5], header[5:17]):
            c.send(piece)
            harness.wait_until(lambda: unread_bytes(p.port, me) == 0, 5,
                               "the piece taken by the proxy")
        c.send(header[17:] + b"a LOGIN ann ann-pw\r\n")
        self.assertTrue(c.readline().startswith(b"* OK"))
        _, tagged = c.read_until_tagged("a")
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        harness.wait_for_log(p.log_path, r"imap login ok: .*client=192\.0\.2\.9:40009", 10)

    # -- 2. a tag the store answers untagged -----------------------------------------

    def test_client_tag_the_store_refuses_pins_no_store_connection(self):
        p = self.proxy("tag-flood")
        self.assertEqual(connections_to(self.store.imap_port), 0)
        start = len(p.log_text())
        for _ in range(ATTACKERS):
            c = LineClient(HOST, p.port)
            self.assertTrue(c.readline().startswith(b"* OK"))
            c.send(b"a] LOGIN ann ann-pw\r\n")
            c.close()
        left = time.monotonic()
        # Every session ends (the clients are gone) and lets its store connection go.
        def counts():
            return (len(self.closed_lines(p, start, "", "ann")),
                    connections_to(self.store.imap_port))
        try:
            harness.wait_until(lambda: counts() == (ATTACKERS, 0), 10,
                               "sessions and store connections closed")
        except AssertionError:
            self.fail("10 s after %d clients sent 'a] LOGIN' and left: %d sessions ended, "
                      "%d store connections open" % ((ATTACKERS,) + counts()))
        sys.stderr.write("\n  %d 'a] LOGIN' then close: all sessions ended and store "
                         "connections closed %.2f s after the last client left\n"
                         % (ATTACKERS, time.monotonic() - left))
        # The store still serves, and a client whose tag the store would refuse logs in and
        # gets its own tag back.
        with LineClient(HOST, p.port) as normal:
            normal.readline()
            _, tagged = normal.command("n", b"LOGIN ann ann-pw")
            self.assertTrue(tagged.startswith(b"n OK"), tagged)
        c = LineClient(HOST, p.port)
        self.addCleanup(c.close)
        c.readline()
        _, tagged = c.command("a]", b"LOGIN ann ann-pw")
        self.assertTrue(tagged.startswith(b"a] OK"), tagged)
        _, tagged = c.command("b", b"SELECT INBOX")
        self.assertTrue(tagged.startswith(b"b OK"), tagged)
        _, tagged = c.command("c", b"LOGOUT")
        self.assertTrue(tagged.startswith(b"c OK"), tagged)

    def fake_store(self):
        store = FakeStore("imap", users={"fay": "fay-pw"}, name="hard").start()
        self.addCleanup(store.stop)
        return store

    def test_store_login_ends_at_once_on_untagged_bad_or_bye(self):
        store = self.fake_store()
        p = self.proxy("untagged", fake_port=store.port)
        for reply in ("* BAD Error in IMAP command received by server.",
                      "* BYE Internal error occurred."):
            store.on("LOGIN", reply, times=1)
            c = LineClient(HOST, p.port)
            self.addCleanup(c.close)
            c.readline()
            began = time.monotonic()
            try:
                _, tagged = c.command("x", b"LOGIN fay fay-pw", timeout=10)
            except socket.timeout:
                self.fail("no answer to LOGIN within 10 s after the store's %r" % reply)
            took = time.monotonic() - began
            self.assertTrue(tagged.startswith(b"x NO [UNAVAILABLE]"), tagged)
            self.assertLess(took, 3.0, "the login waited %.1f s after %r" % (took, reply))
            harness.wait_for_log(p.log_path, r"result=unavailable .*reason=\"[^\"]*%s"
                                 % reply.split()[1], 10)
        # The store never saw a tag of the client's.
        self.assertTrue(all(not e.line.startswith("x ") for e in store.exchanges()),
                        store.exchanges())
        harness.wait_until(lambda: connections_to(store.port) == 0, 5, "store connections closed")

    # -- 4. locking out another address ----------------------------------------------

    def test_failed_logins_from_one_address_do_not_block_another(self):
        victim = HOST
        attacker = colliding_loopback(victim)
        p = self.proxy("lockout", limits='auth_failure_exempt = []\nauth_failure_delay = "0s"\n'
                                         'auth_failure_block_after = 5\nmax_login_attempts = 3\n')
        failures = 0
        refused = False
        for _ in range(21):
            s = client_from(attacker, p.port)
            f = s.makefile("rwb")
            greeting = f.readline()
            if not greeting.startswith(b"* OK"):
                self.assertIn(b"Too many failed logins", greeting)
                refused = True
                s.close()
                break
            for n in range(3):
                f.write(b"a%d LOGIN nobody%d wrong\r\n" % (n, n))
                f.flush()
                reply = f.readline()
                if not reply.startswith(b"a%d NO" % n):
                    break
                failures += 1
            s.close()
        # The block is checked when a connection comes: the second connection's three
        # failures all count, the third connection is turned away.
        self.assertTrue(refused, "the attacker itself is blocked after 5 failures")
        self.assertEqual(failures, 6)
        # The victim (which shared the attacker's slot under the old hash) never failed.
        c = LineClient(victim, p.port)
        self.addCleanup(c.close)
        greeting = c.readline()
        self.assertTrue(greeting.startswith(b"* OK"),
                        "%s is blocked by %s's failures: %r" % (victim, attacker, greeting))
        _, tagged = c.command("v", b"LOGIN ann ann-pw")
        self.assertTrue(tagged.startswith(b"v OK"), tagged)


if __name__ == "__main__":
    unittest.main()
