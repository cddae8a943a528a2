#!/usr/bin/env python3
"""A bounded soak of Switchyard on loopback, with faults injected at random.

Switchyard (workers = 2) in front of two real Dovecot stores (IMAP, POP3, LMTP); a bounded
number of client threads send mixed traffic (IMAP login/select/fetch/append/logout, POP3
login/list/retr/quit, LMTP deliveries to users on both stores) while an injector, one fault
at a time, kills a worker, reloads (SIGHUP), stops a store for a few seconds and continues
it, or sends a client that stalls or disconnects in the middle of a command.

Every fault opens a window; a failed client operation is explained only by a fault whose
window it overlaps (a stopped store explains only operations touching that store; a
misbehaving client explains nothing).  At the end it reports sessions served, failures
(explained and not), messages accepted (LMTP 250 per recipient, APPEND OK) against
messages found in the stores by Message-ID, and the RSS and descriptor counts of the
master and workers after a warm-up and after the load stopped.

Exit status 0 when there is no violation: no unexplained failure, every accepted message
found exactly once, nothing found that was not accepted (unless a fault explains it), no
partially sent message delivered, RSS growth <= 20 % (+1 MiB of noise) and descriptor
growth within a small constant once the load has stopped (against a baseline taken after a
warm-up that follows one reload: the master's first reload grows it once).

    tests/soak/soak.py                  # 10 minutes
    tests/soak/soak.py --minutes 2 --threads 8 --seed 7
    tests/soak/soak.py --smoke          # 30 s (make check runs this)

Needs a built tree (abs_top_builddir, default: this source tree) and Dovecot.
"""

import argparse
import os
import random
import re
import shutil
import signal
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import harness  # noqa: E402
from harness import Dovecot, LineClient, Switchyard, make_sqlite_map, toml_string  # noqa: E402

HOST = "127.0.0.1"
USERS_PER_STORE = 4
CLIENT_TIMEOUT = 20.0
LOGIN_TIMEOUT = 3.0
RSS_GROWTH_LIMIT = 1.20
RSS_NOISE_KIB = 1024      # allocator noise on top of that (a fresh worker is ~7 MiB)
FD_GROWTH_LIMIT = 6       # per worker, after the load stopped
MASTER_FD_GROWTH_LIMIT = 2
MID_RE = re.compile(rb"^Message-ID:[ \t]*<([^>\r\n]*)>", re.I | re.M)
STORE_CONF = "auth_username_format = %n\n"


class Failure(Exception):
    pass


# ---------------------------------------------------------------------------
# Bookkeeping.

class Op:
    __slots__ = ("kind", "stores", "start", "end", "ok", "error", "explained_by")

    def __init__(self, kind, stores):
        self.kind = kind
        self.stores = set(stores)
        self.start = time.monotonic()
        self.end = None
        self.ok = False
        self.error = ""
        self.explained_by = None


class Fault:
    __slots__ = ("kind", "store", "start", "end")

    def __init__(self, kind, store=None):
        self.kind = kind
        self.store = store
        self.start = time.monotonic()
        self.end = None

    def explains(self, start, end, stores):
        if self.kind.startswith("client-"):
            return False  # a misbehaving client must not cost anybody else anything
        if self.end is None or start > self.end or end < self.start:
            return False
        if self.kind == "store-stop":
            return self.store in stores
        return True


class Book:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = []
        self.faults = []
        self.accepted = {}      # (user, message-id) -> (start, end) of the op
        self.unacked = {}       # (user, message-id) sent, no positive answer -> its Op
        self.partial = set()    # message-ids sent only in part (must never be stored)
        self.counter = 0

    def next_id(self, what):
        with self.lock:
            self.counter += 1
            return "soak-%s-%d-%d@soak.test" % (what, os.getpid(), self.counter)

    def add_op(self, op):
        with self.lock:
            self.ops.append(op)

    def add_fault(self, fault):
        with self.lock:
            self.faults.append(fault)

    def explain(self, start, end, stores):
        with self.lock:
            faults = list(self.faults)
        for f in faults:
            if f.explains(start, end, stores):
                return f
        return None


# ---------------------------------------------------------------------------
# The set-up.

class Rig:
    def __init__(self, workdir, workers=2):
        self.workdir = workdir
        self.users = {}   # user -> store name
        self.stores = {}
        for n in (1, 2):
            name = "store%d" % n
            users = {"s%du%d" % (n, i): "s%du%d-pw" % (n, i) for i in range(USERS_PER_STORE)}
            self.stores[name] = Dovecot("soak%d" % n, os.path.join(workdir, name), users=users,
                                        extra_conf=STORE_CONF)
            for u in users:
                self.users[u] = name
        map_path = make_sqlite_map(os.path.join(workdir, "users.db"), sorted(self.users.items()))
        self.imap_port, self.pop3_port, self.lmtp_port = harness.free_ports(3)
        backends = "".join(
            "[backend.%s]\nhost = \"127.0.0.1\"\nimap = %d\npop3 = %d\nlmtp = %d\n"
            "connect_timeout = \"1s\"\nlogin_timeout = \"%ds\"\ndown_time = \"0s\"\n\n"
            % (name, s.imap_port, s.pop3_port, s.lmtp_port, LOGIN_TIMEOUT)
            for name, s in sorted(self.stores.items()))
        config = ("workers = %d\nmap_dir = %s\ncontrol_dir = \"\"\n"
                  "[log]\ntarget = \"stderr\"\nlevel = \"info\"\n\n"
                  "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[listen]]\nprotocol = \"pop3\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[listen]]\nprotocol = \"lmtp\"\naddress = \"127.0.0.1:%d\"\n\n"
                  "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n"
                  "[username]\nstrip_domain = true\n\n"
                  "[limits]\nauth_failure_delay = \"0s\"\ndrain_timeout = \"30s\"\n"
                  "max_prelogin_per_ip = 1000\n\n"
                  "[lmtp]\nstore_timeout = \"15s\"\n\n%s"
                  % (workers, toml_string(harness.map_dir()), self.imap_port, self.pop3_port,
                     self.lmtp_port, toml_string(map_path), backends))
        self.proxy = Switchyard(None, os.path.join(workdir, "proxy"), config)

    def workers(self):
        return sorted(harness.children_of(self.proxy.pid))

    def stop(self):
        self.proxy.stop()
        for s in self.stores.values():
            s.stop()

    def found(self):
        """(user, message-id) -> how many times it is in the user's mailbox."""
        out = {}
        for user, name in self.users.items():
            for path in self.stores[name].mailbox_files(user):
                try:
                    with open(path, "rb") as f:
                        head = f.read(8192).split(b"\r\n\r\n", 1)[0]
                except OSError:
                    continue
                m = MID_RE.search(head)
                if m:
                    key = (user, m.group(1).decode("ascii", "replace"))
                    out[key] = out.get(key, 0) + 1
        return out


def proc_stats(pid):
    """(RSS in KiB, open descriptors) of a process."""
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir("/proc/%d/fd" % pid))


# ---------------------------------------------------------------------------
# Clients.

def expect(cond, what):
    if not cond:
        raise Failure(what)


class Traffic:
    def __init__(self, rig, book, seed):
        self.rig = rig
        self.book = book
        self.rng = random.Random(seed)
        self.users = sorted(rig.users)

    def pick_user(self):
        return self.rng.choice(self.users)

    def message(self, mid, to):
        body = "".join("line %d of %s\r\n" % (i, mid) for i in range(self.rng.randint(1, 40)))
        return ("From: soak@example.test\r\nTo: %s\r\nSubject: soak %s\r\nMessage-ID: <%s>\r\n"
                "\r\n%s" % (to, mid, mid, body)).encode()

    def run(self, op_kind):
        handler = getattr(self, "op_" + op_kind)
        handler()

    def _op(self, kind, users, fn):
        op = Op(kind, {self.rig.users[u] for u in users})
        try:
            fn(op)
            op.ok = True
        except (Failure, OSError, EOFError) as e:
            op.error = "%s: %s" % (type(e).__name__, str(e)[:300])
        op.end = time.monotonic()
        self.book.add_op(op)

    # IMAP: login, select, fetch, sometimes append, logout.
    def op_imap(self):
        user = self.pick_user()

        def body(op):
            c = LineClient(HOST, self.rig.imap_port, timeout=CLIENT_TIMEOUT)
            try:
                expect(c.readline().startswith(b"* OK"), "imap greeting")
                _, t = c.command("a", "LOGIN %s %s-pw" % (user, user))
                expect(t.startswith(b"a OK"), "LOGIN: %r" % t)
                untagged, t = c.command("b", "SELECT INBOX")
                expect(t.startswith(b"b OK"), "SELECT: %r" % t)
                exists = 0
                for u in untagged:
                    m = re.match(rb"\* (\d+) EXISTS", u)
                    if m:
                        exists = int(m.group(1))
                if exists:
                    n = self.rng.randint(1, exists)
                    _, t = c.command("c", "FETCH %d (UID FLAGS BODY.PEEK[HEADER.FIELDS "
                                          "(MESSAGE-ID)])" % n)
                    expect(t.startswith(b"c OK"), "FETCH: %r" % t)
                if self.rng.random() < 0.3:
                    mid = self.book.next_id("append")
                    raw = self.message(mid, user + "@example.test")
                    key = (user, mid)
                    with self.book.lock:
                        self.book.unacked[key] = op
                    c.send(b"d APPEND INBOX {%d}\r\n" % len(raw))
                    cont = c.readline()
                    expect(cont.startswith(b"+"), "APPEND continuation: %r" % cont)
                    c.send(raw + b"\r\n")
                    _, t = c.read_until_tagged("d")
                    expect(t.startswith(b"d OK"), "APPEND: %r" % t)
                    with self.book.lock:
                        del self.book.unacked[key]
                        self.book.accepted[key] = (op.start, time.monotonic())
                _, t = c.command("e", "LOGOUT")
                expect(t.startswith(b"e OK"), "LOGOUT: %r" % t)
            finally:
                c.close()
        self._op("imap", [user], body)

    # POP3: login, list, retr, quit.
    def op_pop3(self):
        user = self.pick_user()

        def body(op):
            c = LineClient(HOST, self.rig.pop3_port, timeout=CLIENT_TIMEOUT)
            try:
                expect(c.readline().startswith(b"+OK"), "pop3 greeting")
                c.send("USER %s\r\n" % user)
                expect(c.readline().startswith(b"+OK"), "USER")
                c.send("PASS %s-pw\r\n" % user)
                r = c.readline()
                expect(r.startswith(b"+OK"), "PASS: %r" % r)
                c.send("LIST\r\n")
                r = c.readline()
                expect(r.startswith(b"+OK"), "LIST: %r" % r)
                count = 0
                while True:
                    line = c.readline()
                    if line == b".\r\n":
                        break
                    count += 1
                if count:
                    c.send("RETR %d\r\n" % self.rng.randint(1, count))
                    r = c.readline()
                    expect(r.startswith(b"+OK"), "RETR: %r" % r)
                    while c.readline() != b".\r\n":
                        pass
                c.send("QUIT\r\n")
                expect(c.readline().startswith(b"+OK"), "QUIT")
            finally:
                c.close()
        self._op("pop3", [user], body)

    # LMTP: one message to one to three users on both stores.
    def op_lmtp(self):
        rcpts = self.rng.sample(self.users, self.rng.randint(1, 3))

        def body(op):
            mid = self.book.next_id("lmtp")
            c = LineClient(HOST, self.rig.lmtp_port, timeout=CLIENT_TIMEOUT)
            try:
                expect(c.readline().startswith(b"220"), "lmtp greeting")
                c.send("LHLO soak.test\r\n")
                while True:
                    line = c.readline()
                    expect(line.startswith(b"250"), "LHLO: %r" % line)
                    if line[3:4] == b" ":
                        break
                c.send("MAIL FROM:<soak@example.test>\r\n")
                r = c.readline()
                expect(r.startswith(b"250"), "MAIL: %r" % r)
                accepted = []
                refused = []
                for u in rcpts:
                    c.send("RCPT TO:<%s@example.test>\r\n" % u)
                    r = c.readline()
                    (accepted if r.startswith(b"250") else refused).append((u, r))
                if not accepted:
                    c.send("QUIT\r\n")
                    raise Failure("every RCPT refused: %r" % refused)
                c.send("DATA\r\n")
                r = c.readline()
                expect(r.startswith(b"354"), "DATA: %r" % r)
                with self.book.lock:
                    for u, _ in accepted:
                        self.book.unacked[(u, mid)] = op
                c.send(self.message(mid, ", ".join(u + "@example.test" for u, _ in accepted))
                       + b".\r\n")
                finals = []
                for u, _ in accepted:
                    r = c.readline()
                    finals.append((u, r))
                    if r.startswith(b"250"):
                        with self.book.lock:
                            self.book.unacked.pop((u, mid), None)
                            self.book.accepted[(u, mid)] = (op.start, time.monotonic())
                c.send("QUIT\r\n")
                bad = [(u, r) for u, r in finals if not r.startswith(b"250")]
                expect(not bad and not refused, "refused: %r %r" % (refused, bad))
            finally:
                c.close()
        self._op("lmtp", rcpts, body)


# ---------------------------------------------------------------------------
# Faults.

class Injector:
    KINDS = ("worker-kill", "reload", "store-stop", "client-stall", "client-drop")

    def __init__(self, rig, book, seed, interval):
        self.rig = rig
        self.book = book
        self.rng = random.Random(seed)
        self.interval = interval
        self.counts = {}
        self.errors = []
        self.pending = len(self.KINDS)

    def run(self, stop_at, stop_event):
        order = list(self.KINDS)
        self.rng.shuffle(order)  # every kind at least once (the run waits), then at random
        self.pending = len(order)
        while not stop_event.is_set():
            wait = self.rng.uniform(*self.interval)
            if stop_event.wait(wait) or (not order and time.monotonic() + 1 >= stop_at):
                return
            kind = order.pop(0) if order else self.rng.choice(self.KINDS)
            self.pending = len(order)
            try:
                getattr(self, kind.replace("-", "_"))()
                self.counts[kind] = self.counts.get(kind, 0) + 1
            except Exception as e:  # noqa: BLE001 - reported as a violation
                self.errors.append("%s: %r" % (kind, e))

    def worker_kill(self):
        victims = self.rig.workers()
        if not victims:
            return
        victim = self.rng.choice(victims)
        f = Fault("worker-kill")
        self.book.add_fault(f)
        os.kill(victim, signal.SIGKILL)
        harness.wait_until(lambda: victim not in self.rig.workers()
                           and len(self.rig.workers()) >= 2, 15, "a respawned worker")
        f.end = time.monotonic() + 1.0

    def reload(self):
        f = Fault("reload")
        self.book.add_fault(f)
        before = set(self.rig.workers())
        os.kill(self.rig.proxy.pid, signal.SIGHUP)
        harness.wait_until(lambda: len(set(self.rig.workers()) - before) >= 2, 15,
                           "new workers after SIGHUP")
        f.end = time.monotonic() + 1.0

    def store_stop(self):
        name = self.rng.choice(sorted(self.rig.stores))
        store = self.rig.stores[name]
        f = Fault("store-stop", name)
        self.book.add_fault(f)
        # The whole Dovecot: it leads a process group of its own.
        os.killpg(store.pid, signal.SIGSTOP)
        try:
            time.sleep(self.rng.uniform(1.0, 4.0))   # the fault itself, not a synchronisation
        finally:
            os.killpg(store.pid, signal.SIGCONT)
        f.end = time.monotonic() + LOGIN_TIMEOUT + 1.0

    def client_stall(self):
        """Clients that stop in the middle of a command, for a while, then go."""
        f = Fault("client-stall")
        self.book.add_fault(f)
        socks = []
        try:
            for port, text in ((self.rig.imap_port, b"a LOGIN s1u0 {8}\r\n"),
                               (self.rig.imap_port, b"a LOGIN s2u1 s2u1-"),
                               (self.rig.pop3_port, b"USER s1u1\r\nPASS s1u"),
                               (self.rig.lmtp_port, b"LHLO stall\r\nMAIL FROM:<x@example.t")):
                s = socket.create_connection((HOST, port), timeout=5)
                s.sendall(text)
                socks.append(s)
            time.sleep(self.rng.uniform(1.0, 3.0))  # the stall itself
        finally:
            for s in socks:
                s.close()
        f.end = time.monotonic()

    def client_drop(self):
        """Clients that disconnect in the middle of a command: a logged-in IMAP FETCH of
        everything, unread; an LMTP message cut off in DATA (must never be stored)."""
        f = Fault("client-drop")
        self.book.add_fault(f)
        user = self.rng.choice(sorted(self.rig.users))
        c = LineClient(HOST, self.rig.imap_port, timeout=CLIENT_TIMEOUT)
        try:
            c.readline()
            _, t = c.command("a", "LOGIN %s %s-pw" % (user, user))
            if t.startswith(b"a OK"):
                c.command("b", "SELECT INBOX")
                c.send("c FETCH 1:* (BODY.PEEK[])\r\n")
        finally:
            c.close()
        mid = self.book.next_id("partial")
        with self.book.lock:
            self.book.partial.add(mid)
        c = LineClient(HOST, self.rig.lmtp_port, timeout=CLIENT_TIMEOUT)
        try:
            c.send("LHLO drop\r\nMAIL FROM:<>\r\nRCPT TO:<%s@example.test>\r\nDATA\r\n" % user)
            c.send("Message-ID: <%s>\r\nSubject: cut\r\n\r\nhalf a mess" % mid)
            time.sleep(0.2)   # let the bytes go before the close (no synchronisation needed)
        finally:
            c.close()
        f.end = time.monotonic()


# ---------------------------------------------------------------------------
# The run.

def measure(rig):
    master = proc_stats(rig.proxy.pid)
    workers = {}
    for pid in rig.workers():
        try:
            workers[pid] = proc_stats(pid)
        except OSError:
            pass
    return master, workers


def fmt_stats(label, stats):
    master, workers = stats
    per = ", ".join("%d: %d KiB %d fds" % (pid, rss, fds) for pid, (rss, fds) in
                    sorted(workers.items()))
    return "%s: master %d KiB %d fds; workers %s" % (label, master[0], master[1], per)


def averages(workers):
    if not workers:
        return 0.0, 0.0
    return (sum(v[0] for v in workers.values()) / len(workers),
            sum(v[1] for v in workers.values()) / len(workers))


def quiesce(rig, timeout=60.0):
    """Wait until only the current two workers are left (drained old ones gone) and their
    descriptor counts stop moving."""
    harness.wait_until(lambda: len(rig.workers()) == 2, timeout, "two workers after the load")
    last = None
    deadline = time.monotonic() + timeout
    stable = 0
    while time.monotonic() < deadline:
        _, workers = measure(rig)
        now = sorted((pid, fds) for pid, (_, fds) in workers.items())
        stable = stable + 1 if now == last else 0
        if stable >= 10:
            return
        last = now
        time.sleep(0.1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--smoke", action="store_true", help="a 30 s run (make check)")
    ap.add_argument("--threads", type=int, default=6)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    minutes = 0.5 if args.smoke else args.minutes
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    duration = minutes * 60.0
    warmup = min(30.0, max(8.0, duration * 0.1))
    interval = (1.5, 3.0) if duration <= 60 else (5.0, 15.0)
    print("soak: %.1f min, %d client threads, seed %d" % (minutes, args.threads, seed),
          flush=True)

    workdir = harness.make_workdir("switchyard-soak-")
    rig = None
    violations = []
    try:
        rig = Rig(workdir)
        harness.wait_until(lambda: len(rig.workers()) == 2, 15, "two workers")
        book = Book()
        # The master's first reload grows it once (~1.7 MB: the new config and maps); later
        # ones do not. Reload once before the baseline, so that growth is not counted.
        Injector(rig, book, seed, (0, 0)).reload()
        stop = threading.Event()
        started = time.monotonic()
        stop_at = started + duration

        def client(n):
            t = Traffic(rig, book, seed * 100 + n)
            while not stop.is_set():
                t.run(t.rng.choices(("imap", "pop3", "lmtp"), (4, 2.5, 3.5))[0])

        threads = [threading.Thread(target=client, args=(n,), daemon=True)
                   for n in range(args.threads)]
        for t in threads:
            t.start()
        # The baseline after a warm-up without faults.
        time.sleep(warmup)   # the warm-up's length, not a synchronisation
        base = measure(rig)
        print(fmt_stats("after warm-up (%.0fs)" % warmup, base), flush=True)
        injector = Injector(rig, book, seed + 1, interval)
        inj = threading.Thread(target=injector.run, args=(stop_at, stop), daemon=True)
        inj.start()
        # Until the end, and until every kind of fault was injected once (a short run).
        while time.monotonic() < stop_at or (injector.pending and inj.is_alive()):
            time.sleep(min(10.0, max(0.5, stop_at - time.monotonic())))
            done = len(book.ops)
            print("  %4.0fs: %d operations, %d faults" % (time.monotonic() - started, done,
                                                          len(book.faults)), flush=True)
        stop.set()
        inj.join(60)
        for t in threads:
            t.join(CLIENT_TIMEOUT * 3)
        stuck = [t for t in threads if t.is_alive()]
        if stuck:
            violations.append("%d client threads did not finish" % len(stuck))
        if not rig.proxy.running():
            violations.append("switchyard exited: %s" % rig.proxy.process.returncode)
        quiesce(rig)
        end = measure(rig)
        print(fmt_stats("after the load", end), flush=True)

        # -- failures ----------------------------------------------------------
        ops = book.ops
        failed = [op for op in ops if not op.ok]
        unexplained = []
        explained = {}
        for op in failed:
            f = book.explain(op.start, op.end, op.stores)
            if f is None:
                unexplained.append(op)
            else:
                explained[f.kind] = explained.get(f.kind, 0) + 1
        by_kind = {}
        for op in ops:
            k = by_kind.setdefault(op.kind, [0, 0])
            k[0 if op.ok else 1] += 1
        log = rig.proxy.log_text()
        served = len(re.findall(r"(?:imap|pop3) session \d+ closed", log))
        print("sessions served (ok client operations): %d of %d; switchyard logged %d "
              "IMAP/POP3 sessions closed" % (len(ops) - len(failed), len(ops), served))
        for kind, (ok, bad) in sorted(by_kind.items()):
            print("  %-5s ok %d, failed %d" % (kind, ok, bad))
        print("faults injected: %s" % ", ".join("%s x%d" % kv for kv in
                                                 sorted(injector.counts.items())))
        print("failures explained by a fault: %d (%s)" % (
            sum(explained.values()),
            ", ".join("%s %d" % kv for kv in sorted(explained.items())) or "-"))
        print("failures NOT explained: %d" % len(unexplained))
        for op in unexplained[:20]:
            print("  %s at +%.1fs..+%.1fs stores=%s: %s" % (op.kind, op.start - started,
                                                          op.end - started,
                                                          ",".join(sorted(op.stores)), op.error))
        if unexplained:
            violations.append("%d unexplained failures" % len(unexplained))
        for e in injector.errors:
            violations.append("fault injection failed: " + e)

        # -- messages ----------------------------------------------------------
        found = rig.found()
        accepted = book.accepted
        missing = [k for k in accepted if found.get(k, 0) == 0]
        duplicates = [k for k, n in found.items() if n > 1]
        extra = [k for k in found if k not in accepted]
        extra_unexplained = []
        for k in extra:
            op = book.unacked.get(k)   # sent in full, the answer lost
            if k[1] in book.partial:
                extra_unexplained.append(k)   # a message cut off in DATA was stored
            elif op is None or book.explain(op.start, op.end, op.stores) is None:
                extra_unexplained.append(k)
        lmtp_ok = sum(1 for k in accepted if "-lmtp-" in k[1])
        append_ok = len(accepted) - lmtp_ok
        found_total = sum(found.values())
        print("messages accepted: %d (LMTP 250 per recipient %d, APPEND OK %d); found in the "
              "stores: %d" % (len(accepted), lmtp_ok, append_ok, found_total))
        print("  missing %d, duplicated %d, found without a positive answer %d (explained "
              "by a fault %d), cut-off messages stored %d"
              % (len(missing), len(duplicates), len(extra), len(extra) - len(extra_unexplained),
                 len([k for k in extra if k[1] in book.partial])))
        if missing:
            violations.append("%d accepted messages missing, e.g. %s" % (len(missing),
                                                                        missing[:3]))
        if duplicates:
            violations.append("%d messages stored twice, e.g. %s" % (len(duplicates),
                                                                    duplicates[:3]))
        if extra_unexplained:
            violations.append("%d messages stored without an explanation, e.g. %s"
                              % (len(extra_unexplained), extra_unexplained[:3]))

        # -- resources ---------------------------------------------------------
        (m_rss0, m_fd0), (m_rss1, m_fd1) = base[0], end[0]
        w_rss0, w_fd0 = averages(base[1])
        w_rss1, w_fd1 = averages(end[1])
        print("master: RSS %d -> %d KiB (%+.1f%%), fds %d -> %d"
              % (m_rss0, m_rss1, 100.0 * (m_rss1 - m_rss0) / max(1, m_rss0), m_fd0, m_fd1))
        print("workers (average): RSS %.0f -> %.0f KiB (%+.1f%%), fds %.1f -> %.1f"
              % (w_rss0, w_rss1, 100.0 * (w_rss1 - w_rss0) / max(1, w_rss0), w_fd0, w_fd1))
        # Under ASan (scripts/test-sanitized) freed memory sits in the sanitizer's
        # quarantine and RSS says nothing about leaks: LeakSanitizer's reports do.
        sanitized = os.environ.get("SWITCHYARD_SANITIZERS") == "yes"
        if sanitized:
            print("RSS not judged: a sanitized build")
        if not sanitized and m_rss1 > m_rss0 * RSS_GROWTH_LIMIT + RSS_NOISE_KIB:
            violations.append("master RSS grew %d -> %d KiB" % (m_rss0, m_rss1))
        if m_fd1 > m_fd0 + MASTER_FD_GROWTH_LIMIT:
            violations.append("master fds grew %d -> %d" % (m_fd0, m_fd1))
        if not sanitized and w_rss1 > w_rss0 * RSS_GROWTH_LIMIT + RSS_NOISE_KIB:
            violations.append("worker RSS grew %.0f -> %.0f KiB" % (w_rss0, w_rss1))
        if w_fd1 > w_fd0 + FD_GROWTH_LIMIT:
            violations.append("worker fds grew %.1f -> %.1f" % (w_fd0, w_fd1))
        if not rig.proxy.running():
            violations.append("switchyard is not running at the end")
    except Exception as e:  # noqa: BLE001 - a soak that cannot run is a failure
        violations.append("the soak itself failed: %r" % e)
        if rig is not None:
            print(rig.proxy.describe()[-3000:])
    finally:
        if rig is not None:
            rig.stop()
        if args.keep or os.environ.get("SWITCHYARD_KEEP_TMP"):
            print("work directory kept: %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if violations:
        print("SOAK FAILED:")
        for v in violations:
            print("  " + v)
        return 1
    print("SOAK PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
