#!/usr/bin/env python3
"""Side-by-side IMAP proxy benchmark: direct Dovecot, Switchyard, nginx mail, Perdition.

Starts two tuned Dovecot stores on loopback (users split between them: user k lives on
store k % 2), then each peer in turn, and drives it with bench/imap-load:

  logins  logins/s, p50/p99 login latency, proxy CPU ms per login (and the stores' CPU)
  bulk    MB/s of FETCH BODY.PEEK[] of a large message, proxy CPU ms per GB relayed
  idle    N logged-in idle sessions: proxy memory (sum of Pss) per idle session

CPU is utime+stime+cutime+cstime summed over the peer's live process tree, read from
/proc/PID/stat before and after each run (dead, reaped children are in their parent's
cutime/cstime, so forking servers are counted whole). Memory is the sum of Pss from
/proc/PID/smaps_rollup over the same tree.

Everything it starts is a child of its own (own session), stopped by PID at exit and on
Ctrl-C. Every run is bounded in time. See bench/README.

  make -C bench && python3 bench/run.py --quick
"""

import argparse
import datetime
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

import harness  # noqa: E402
from harness import (Dovecot, Switchyard, backend_section, make_sqlite_map,  # noqa: E402
                     switchyard_config, wait_port)

LOADGEN = os.path.join(BENCH, "imap-load")
HOST = "127.0.0.1"
PASSWORD = "pass"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Dovecot tuning, the same for every peer: login processes stay up and serve many
# clients, post-login imap processes are reused (no fork per login) with one client each,
# no per-login log lines, limits high enough for 10,000 sessions.
DOVECOT_TUNING = """
# --- bench/run.py tuning ---
auth_verbose = no
verbose_proctitle = no
auth_cache_size = 10M
auth_cache_ttl = 1 hour
default_client_limit = 20000
default_process_limit = 20000
default_vsz_limit = 1G
service imap-login {
  service_count = 0
  process_min_avail = 2
  client_limit = 10000
}
service imap {
  service_count = 0
  client_limit = 1
  process_min_avail = 4
  process_limit = 12000
}
protocol imap {
  mail_max_userip_connections = 100000
}
"""

ALL_PEERS = ["direct", "switchyard-w2", "switchyard-w1", "nginx", "nginx-buf64k", "perdition"]
ALL_MODES = ["logins", "bulk", "idle"]


def log(msg):
    sys.stderr.write("[run.py %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# /proc accounting.

def _proc_table():
    """{pid: (ppid, ticks)} for every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "r") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        # rest[0] = state (field 3); utime = field 14 -> rest[11], stime 15, cutime 16, cstime 17
        ppid = int(rest[1])
        ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
        table[int(entry)] = (ppid, ticks)
    return table


def tree_pids(roots, table=None):
    table = table if table is not None else _proc_table()
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [r for r in roots if r in table]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def cpu_seconds(roots):
    if not roots:
        return 0.0
    table = _proc_table()
    return sum(table[p][1] for p in tree_pids(roots, table)) / CLK_TCK


def sys_cpu():
    """(busy seconds, total seconds) of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest is inside user)
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
    total = busy + v[3] + v[4]
    return busy / CLK_TCK, total / CLK_TCK


def pss_bytes(roots):
    total = 0
    for pid in tree_pids(roots):
        try:
            with open("/proc/%d/smaps_rollup" % pid, "r") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


class CpuGroup:
    """A cgroup-v1 cpuacct group of our own: exact CPU time of everything in it, including
    forked children that have exited (whether or not their parent waited for them).
    Falls back to the /proc tree sums when cpuacct is not writable here."""

    BASE = "/sys/fs/cgroup/cpuacct"

    def __init__(self, name):
        self.path = None
        parent = os.path.join(self.BASE, "switchyard-bench-%d" % os.getpid())
        try:
            os.makedirs(os.path.join(parent, name), exist_ok=True)
            self.path = os.path.join(parent, name)
        except OSError:
            self.path = None
        self.parent = parent
        self.roots = []

    def add(self, roots):
        """Move the process trees under `roots` in (twice: children forked meanwhile)."""
        self.roots = list(roots)
        if not self.path:
            return
        for _ in range(2):
            for pid in tree_pids(self.roots):
                try:
                    with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
                        f.write(str(pid))
                except OSError:
                    pass  # exited meanwhile

    def seconds(self):
        if self.path:
            try:
                with open(os.path.join(self.path, "cpuacct.usage")) as f:
                    return int(f.read()) / 1e9
            except OSError:
                pass
        return cpu_seconds(self.roots)

    def method(self):
        return "cgroup cpuacct" if self.path else "/proc stat of the process tree"

    def remove(self):
        if not self.path:
            return
        for _ in range(50):
            try:
                os.rmdir(self.path)
                break
            except OSError:
                time.sleep(0.1)
        try:
            os.rmdir(self.parent)  # only once empty
        except OSError:
            pass
        self.path = None


# ---------------------------------------------------------------------------
# Processes of our own (nginx, Perdition): own session, stopped by PID / own group.

_OWN = []


class OwnProcess:
    def __init__(self, argv, workdir, name, port):
        self.argv, self.workdir, self.name, self.port = argv, workdir, name, port
        self.log_path = os.path.join(workdir, name + ".log")
        self.process = None

    def describe(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return "--- %s ---\n%s" % (self.log_path, f.read()[-4000:])
        except OSError:
            return ""

    def start(self):
        logf = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=logf,
                                            stderr=subprocess.STDOUT, cwd=self.workdir,
                                            start_new_session=True)
        finally:
            logf.close()
        _OWN.append(self)
        wait_port(HOST, self.port, 15.0, self.process, self.describe)

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def stop(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGTERM)
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        # Forked children (Perdition's per-connection processes) are in our own group.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self in _OWN:
            _OWN.remove(self)


# ---------------------------------------------------------------------------
# Peers.

class Peer:
    name = "?"
    label = "?"

    def __init__(self, ctx):
        self.ctx = ctx

    def start(self):
        pass

    def stop(self):
        pass

    def targets(self):
        return ["%s:%d" % (HOST, self.port)]

    def roots(self):
        """PIDs whose process trees are this proxy (empty for direct Dovecot)."""
        return []

    def fd_capacity_sessions(self):
        """How many proxied sessions fit in this peer's descriptor limits (None: no limit)."""
        return None


class Direct(Peer):
    name = "direct"
    label = "direct Dovecot"

    def targets(self):
        return ["%s:%d" % (HOST, s.imap_port) for s in self.ctx.stores]


class SwitchyardPeer(Peer):
    def __init__(self, ctx, workers):
        super().__init__(ctx)
        self.workers = workers
        self.name = "switchyard-w%d" % workers
        self.label = "Switchyard workers=%d" % workers
        self.proxy = None

    def start(self):
        ctx = self.ctx
        self.port = harness.free_port()
        backends = "".join(backend_section("store%d" % i, s.imap_port)
                           for i, s in enumerate(ctx.stores))
        config = switchyard_config(self.port, maps=[(ctx.sqlite_module, ctx.map_path)],
                                   backends=backends,
                                   level=ctx.args.sy_log_level, workers=self.workers,
                                   limits={"login_timeout": "60s", "idle_timeout": "30m",
                                           "max_prelogin_sessions": 100000,
                                           "max_prelogin_per_ip": 100000})
        workdir = os.path.join(ctx.tmp, self.name)
        self.proxy = Switchyard(ctx.switchyard, workdir, config)

    def stop(self):
        if self.proxy:
            self.proxy.stop()

    def roots(self):
        return [self.proxy.pid] if self.proxy and self.proxy.pid else []

    def fd_capacity_sessions(self):
        # Each worker holds two descriptors per relayed session.
        return self.workers * (self.ctx.nofile - 200) // 2


class NginxPeer(Peer):
    def __init__(self, ctx, proxy_buffer=None):
        super().__init__(ctx)
        self.proxy_buffer = proxy_buffer or ctx.args.nginx_proxy_buffer
        if proxy_buffer:
            self.name = "nginx-buf" + proxy_buffer
            self.label = "nginx mail, proxy_buffer %s" % proxy_buffer
        else:
            self.name = "nginx"
            self.label = "nginx mail"

    def start(self):
        ctx = self.ctx
        self.port, self.auth_port = harness.free_ports(2)
        workdir = harness.make_workdir(os.path.join(ctx.tmp, "nginx-"))
        p0, p1 = ctx.stores[0].imap_port, ctx.stores[1].imap_port
        conns = min(ctx.nofile - 100, 20000)
        conf = """\
# Written by bench/run.py.
daemon off;
master_process on;
worker_processes {workers};
user nobody nogroup;
pid {w}/nginx.pid;
error_log {w}/error.log error;
worker_rlimit_nofile {nofile};
load_module /usr/lib/nginx/modules/ngx_mail_module.so;
events {{
  worker_connections {conns};
}}
http {{
  access_log off;
  client_body_temp_path {w}/tmp-body;
  proxy_temp_path {w}/tmp-proxy;
  fastcgi_temp_path {w}/tmp-fastcgi;
  uwsgi_temp_path {w}/tmp-uwsgi;
  scgi_temp_path {w}/tmp-scgi;
  # The "map lookup": user k lives on store k % 2 (even last digit: store0).
  map $http_auth_user $store_port {{
    ~[02468]$ {p0};
    default   {p1};
  }}
  server {{
    listen {host}:{auth_port};
    location = /auth {{
      add_header Auth-Status OK;
      add_header Auth-Server {host};
      add_header Auth-Port $store_port;
      return 204;
    }}
  }}
}}
mail {{
  auth_http {host}:{auth_port}/auth;
  proxy_pass_error_message on;
  server {{
    listen {host}:{port};
    protocol imap;
    proxy on;
    imap_auth login plain;{proxy_buffer}
  }}
}}
""".format(workers=ctx.args.nginx_workers, w=workdir, nofile=ctx.nofile, conns=conns,
           p0=p0, p1=p1, host=HOST, auth_port=self.auth_port, port=self.port,
           proxy_buffer=("\n    proxy_buffer %s;" % self.proxy_buffer
                         if self.proxy_buffer else ""))
        conf_path = os.path.join(workdir, "nginx.conf")
        with open(conf_path, "w") as f:
            f.write(conf)
        self.proc = OwnProcess(["nginx", "-p", workdir, "-e", os.path.join(workdir, "error.log"),
                                "-c", conf_path], workdir, "nginx", self.port)
        self.proc.start()
        wait_port(HOST, self.auth_port, 15.0, self.proc.process, self.proc.describe)

    def stop(self):
        if getattr(self, "proc", None):
            self.proc.stop()

    def roots(self):
        return [self.proc.pid] if self.proc.pid else []

    def fd_capacity_sessions(self):
        return self.ctx.args.nginx_workers * (self.ctx.nofile - 200) // 2


class PerditionPeer(Peer):
    name = "perdition"
    label = "Perdition"

    def start(self):
        ctx = self.ctx
        self.port = harness.free_port()
        workdir = harness.make_workdir(os.path.join(ctx.tmp, "perdition-"))
        popmap = os.path.join(workdir, "popmap")
        with open(popmap, "w") as f:
            for k in range(ctx.args.users):
                f.write("%s:%s:%d\n" % (ctx.user(k), HOST, ctx.stores[k % 2].imap_port))
        db = os.path.join(workdir, "popmap.db")
        with open(popmap, "rb") as src:
            subprocess.run(["makegdbm", db], stdin=src, check=True, timeout=60)
        os.chmod(db, 0o644)
        empty_conf = os.path.join(workdir, "perdition.conf")
        open(empty_conf, "w").close()
        lib = "/usr/lib/x86_64-linux-gnu/libperditiondb_gdbm.so.0"
        argv = ["perdition", "-f", empty_conf, "-P", "IMAP4", "--no_daemon",
                "-b", HOST, "-l", str(self.port), "-M", lib, "-m", db,
                "--ssl_mode", "none", "--no_lookup", "-q", "-F", "+",
                "-u", "nobody", "-g", "nogroup", "--connection_limit", "0",
                "--pid_file", os.path.join(workdir, "perdition.pid")]
        self.proc = OwnProcess(argv, workdir, "perdition", self.port)
        self.proc.start()

    def stop(self):
        if getattr(self, "proc", None):
            self.proc.stop()

    def roots(self):
        return [self.proc.pid] if self.proc.pid else []


# ---------------------------------------------------------------------------
# Load generator runs.

RESULT_RE = re.compile(r'(\w+)=("[^"]*"|\S+)')


def parse_result(text):
    for line in reversed(text.splitlines()):
        if line.startswith("RESULT "):
            out = {}
            for k, v in RESULT_RE.findall(line[7:]):
                v = v.strip('"')
                try:
                    out[k] = float(v) if "." in v else int(v)
                except ValueError:
                    out[k] = v
            return out
    raise RuntimeError("imap-load printed no RESULT line:\n" + text[-2000:])


class Bench:
    def __init__(self, args):
        self.args = args
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.tmp = harness.make_workdir("/tmp/switchyard-bench-")
        self.stores = []
        self.rows = {"logins": [], "bulk": [], "idle": []}
        self.notes = []
        self.loadgen = None  # the imap-load Popen in flight
        self.wait_budget = args.wait_budget  # seconds of waiting for quiet left, in all
        self.cpu_method = "?"
        self.snapshot_build()

    def snapshot_build(self):
        """Copy the daemon and the sqlite module: the tree may be rebuilt while we run."""
        src_bin = self.args.switchyard
        src_map = os.path.join(os.path.dirname(os.path.abspath(src_bin)), "maps", ".libs",
                               "sqlite.so")
        if not os.path.exists(src_map):
            src_map = os.path.join(harness.map_dir(), "sqlite.so")
        harness.require_file(src_map, "the sqlite map module")
        d = os.path.join(self.tmp, "build")
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        self.switchyard = os.path.join(d, "switchyard")
        self.sqlite_module = os.path.join(d, "sqlite.so")
        for attempt in range(30):
            st = os.stat(src_bin)
            shutil.copy2(src_bin, self.switchyard)
            shutil.copy2(src_map, self.sqlite_module)
            ok = subprocess.run([self.switchyard, "-V"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, timeout=10).returncode == 0
            if ok and os.stat(src_bin).st_mtime == st.st_mtime and \
                    time.time() - st.st_mtime > 2:
                break
            time.sleep(2)  # being relinked right now
        else:
            raise RuntimeError("could not take a stable copy of " + src_bin)
        import hashlib
        with open(self.switchyard, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
        self.build_info = "%s (built %s, sha256 %s)%s" % (
            src_bin, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime)), digest,
            git_describe(TOP))
        log("using a copy of " + self.build_info)
        self.versions = versions(self.switchyard)

    def user(self, k):
        return "user%d" % k

    def store_roots(self):
        return [s.pid for s in self.stores if s.pid]

    # -- setup ----------------------------------------------------------------

    def start_stores(self, tag):
        """Two fresh stores for one peer (leftover imap processes of an earlier peer's idle
        run would otherwise all wake up on every new login and skew the next peer)."""
        self.stop_stores()
        base = self.store_base = os.path.join(self.tmp, tag)
        os.makedirs(base, exist_ok=True)
        os.chmod(base, 0o755)
        users = {self.user(k): PASSWORD for k in range(self.args.users)}
        for i in range(2):
            mine = {u: p for k, (u, p) in enumerate(users.items()) if k % 2 == i}
            self.stores.append(Dovecot("bench%d" % i, os.path.join(base, "store%d" % i),
                                       users=mine, extra_conf=DOVECOT_TUNING))
        # One large message in the INBOX of each bulk user (users 0 .. bulk clients - 1).
        size = int(self.args.bulk_mb * 1e6)
        line = b"x" * 76 + b"\r\n"
        body = line * (size // len(line) + 1)
        raw = (b"From: bench@example.invalid\r\nTo: user@example.invalid\r\n"
               b"Subject: bulk\r\n\r\n" + body)[:size]
        for k in range(max(self.args.bulk_concurrency)):
            self.stores[k % 2].add_message(self.user(k), raw)
        self.map_path = make_sqlite_map(
            os.path.join(base, "users.db"),
            [(self.user(k), "store%d" % (k % 2)) for k in range(self.args.users)])
        log("stores on ports %s, work dir %s"
            % (", ".join(str(s.imap_port) for s in self.stores), base))

    def stop_stores(self):
        for store in self.stores:
            store.stop()
        self.stores = []
        if getattr(self, "store_base", None) and not self.args.keep:
            shutil.rmtree(self.store_base, ignore_errors=True)
            self.store_base = None

    def make_peer(self, name):
        if name == "direct":
            return Direct(self)
        if name.startswith("switchyard-w"):
            return SwitchyardPeer(self, int(name[len("switchyard-w"):]))
        if name == "nginx":
            return NginxPeer(self)
        if name.startswith("nginx-buf"):
            return NginxPeer(self, name[len("nginx-buf"):])
        if name == "perdition":
            return PerditionPeer(self)
        raise ValueError(name)

    # -- one load-generator run -----------------------------------------------

    def loadgen_cmd(self, mode, peer, extra):
        cmd = [LOADGEN, mode]
        for t in peer.targets():
            cmd += ["--target", t]
        cmd += ["--users", str(self.args.users), "--password", PASSWORD,
                "--timeout", str(self.args.step_timeout)]
        return cmd + extra

    def run_loadgen(self, cmd, limit):
        log(" ".join(cmd[1:]))
        self.loadgen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        try:
            out, err = self.loadgen.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            self.loadgen.kill()
            out, err = self.loadgen.communicate(timeout=10)
            raise RuntimeError("imap-load did not finish within %ds" % limit)
        finally:
            self.loadgen = None
        if err.strip():
            log("imap-load: " + err.strip()[-500:])
        return parse_result(out)

    def wait_quiet(self):
        """Wait (bounded) until the machine is nearly idle: other people's builds and tests
        on the same 2 CPUs would skew every figure. Returns the busy fraction last seen."""
        wait = min(self.args.quiet_wait, max(self.wait_budget, 0))
        deadline = time.monotonic() + wait
        started = time.monotonic()
        while True:
            b0, t0 = sys_cpu()
            time.sleep(1.0)
            b1, t1 = sys_cpu()
            busy = (b1 - b0) / max(t1 - t0, 1e-9)
            if busy <= self.args.quiet_threshold or time.monotonic() >= deadline:
                self.wait_budget -= time.monotonic() - started
                if busy > self.args.quiet_threshold:
                    log("machine still %.0f%% busy after %.0fs: measuring anyway"
                        % (busy * 100, time.monotonic() - started))
                return busy
            log("machine %.0f%% busy (others): waiting" % (busy * 100))

    def clean_run(self, peer, fn):
        """measured(), again (at most --retries more times) while others' CPU share during
        the run was above --others-limit; the last try is kept and flagged."""
        for attempt in range(self.args.retries + 1):
            out = self.measured(peer, fn)
            if out[3] <= self.args.others_limit:
                return out
            if attempt < self.args.retries:
                log("    others used %.0f%% of the machine during that run: again" % (out[3] * 100))
        return out

    def measured(self, peer, fn):
        """Run fn(); return (result, proxy CPU s, stores CPU s, others' share of the machine).

        others = all CPU time the kernel counted on the machine minus the proxy's, the
        stores' and imap-load's: a figure well above zero means someone else's work ran
        on the same CPUs during the measurement."""
        self.wait_quiet()
        pg, sg = self.peer_group, self.store_group
        p0, s0 = pg.seconds(), sg.seconds()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        b0, t0 = sys_cpu()
        w0 = time.monotonic()
        result = fn()
        w1 = time.monotonic()
        b1, t1 = sys_cpu()
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        p1, s1 = pg.seconds(), sg.seconds()
        load = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        others = (b1 - b0) - (p1 - p0) - (s1 - s0) - load
        capacity = max((w1 - w0) * (os.cpu_count() or 1), 1e-9)
        share = max(others, 0.0) / capacity
        self.last_busy = (b1 - b0) / capacity
        return result, p1 - p0, s1 - s0, share, load

    def warm_up(self, peer):
        c = str(max(self.args.login_concurrency))
        cmd = self.loadgen_cmd("logins", peer, ["-c", c, "-d", str(self.args.warmup_secs),
                                                "--max-time", "60"])
        r = self.run_loadgen(cmd, 90)
        if r.get("logins", 0) == 0:
            raise RuntimeError("%s: warm-up logins all failed: %s" % (peer.name, r))

    @staticmethod
    def median_row(rows, key):
        rows = sorted(rows, key=lambda r: r[key])
        row = dict(rows[len(rows) // 2])
        row["runs"] = [r[key] for r in rows]
        return row

    def bench_logins(self, peer):
        for c in self.args.login_concurrency:
            runs = []
            for _ in range(self.args.repeat):
                cmd = self.loadgen_cmd("logins", peer, ["-c", str(c), "-d", str(self.args.login_secs),
                                                        "--max-time", str(self.args.login_secs + 60)])
                r, pcpu, scpu, others, lcpu = self.clean_run(peer, lambda: self.run_loadgen(
                    cmd, self.args.login_secs + 90))
                n = max(r["logins"], 1)
                row = {"peer": peer.label, "name": peer.name, "c": c, "rate": r["rate"],
                       "p50": r["login_p50_ms"], "p99": r["login_p99_ms"],
                       "cycle_p50": r["cycle_p50_ms"], "errors": r["errors"],
                       "logins": r["logins"],
                       "proxy_ms": pcpu * 1000 / n if peer.roots() else None,
                       "store_ms": scpu * 1000 / n, "load_ms": lcpu * 1000 / n,
                       "others": others, "busy": self.last_busy,
                       "first_error": r.get("first_error")}
                runs.append(row)
                log("  logins c=%d: %.0f/s p50 %.2f ms p99 %.2f ms proxy %s ms/login "
                    "errors %d, others %.0f%%"
                    % (c, row["rate"], row["p50"], row["p99"],
                       "%.3f" % row["proxy_ms"] if row["proxy_ms"] is not None else "-",
                       row["errors"], others * 100))
            self.rows["logins"].append(self.median_row(runs, "rate"))

    def bench_bulk(self, peer):
        for c in self.args.bulk_concurrency:
            runs = []
            for _ in range(self.args.repeat):
                cmd = self.loadgen_cmd("bulk", peer, ["-c", str(c), "-d", str(self.args.bulk_secs),
                                                      "--max-time", str(self.args.bulk_secs + 60)])
                r, pcpu, scpu, others, lcpu = self.clean_run(peer, lambda: self.run_loadgen(
                    cmd, self.args.bulk_secs + 90))
                gb = r["bytes"] / 1e9
                row = {"peer": peer.label, "name": peer.name, "c": c, "mbps": r["mb_per_s"],
                       "gb": gb, "errors": r["errors"],
                       "proxy_ms_gb": pcpu * 1000 / gb if peer.roots() and gb > 0 else None,
                       "store_ms_gb": scpu * 1000 / gb if gb > 0 else None,
                       "load_ms_gb": lcpu * 1000 / gb if gb > 0 else None,
                       "others": others, "busy": self.last_busy,
                       "first_error": r.get("first_error")}
                runs.append(row)
                log("  bulk c=%d: %.0f MB/s (%.2f GB) proxy %s ms/GB errors %d, others %.0f%%"
                    % (c, row["mbps"], gb, "%.0f" % row["proxy_ms_gb"]
                       if row["proxy_ms_gb"] is not None else "-", row["errors"], others * 100))
            self.rows["bulk"].append(self.median_row(runs, "mbps"))

    def bench_idle(self, peer):
        want = self.args.idle_sessions
        if peer.name == "perdition" and self.args.idle_perdition is not None:
            want = min(want, self.args.idle_perdition)
        cap = peer.fd_capacity_sessions()
        if cap is not None and want > cap:
            self.notes.append("%s: idle run capped at %d sessions (RLIMIT_NOFILE %d per "
                              "process, not raisable here)" % (peer.label, cap, self.nofile))
            want = cap
        roots = peer.roots() or self.store_roots()
        self.wait_quiet()
        before = pss_bytes(roots)
        store_before = pss_bytes(self.store_roots())
        limit = self.args.idle_max_secs
        cmd = self.loadgen_cmd("idle", peer, ["-n", str(want), "--ramp", str(self.args.idle_ramp),
                                              "--hold", str(limit), "--max-time", str(limit)])
        log(" ".join(cmd[1:]))
        self.loadgen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        proc = self.loadgen
        try:
            line = self._read_line(proc, limit + 30)
            if not line.startswith("ESTABLISHED"):
                raise RuntimeError("imap-load idle: %r" % line)
            held = int(re.search(r"sessions=(\d+)", line).group(1))
            time.sleep(1.0)  # let lazily freed memory settle
            after = pss_bytes(roots)
            store_after = pss_bytes(self.store_roots())
            proc.stdin.write("\n")
            proc.stdin.flush()
            out, err = proc.communicate(timeout=60)
        except Exception:
            proc.kill()
            proc.communicate(timeout=10)
            raise
        finally:
            self.loadgen = None
        if err.strip():
            log("imap-load: " + err.strip()[-500:])
        r = parse_result(out)
        per = (after - before) / held if held else None
        row = {"peer": peer.label, "name": peer.name, "sessions": held, "requested": want,
               "errors": r["errors"], "secs": r["establish_secs"],
               "before": before, "after": after, "per_session": per,
               "store_per_session": (store_after - store_before) / held if held else None,
               "direct": not peer.roots(), "first_error": r.get("first_error")}
        self.rows["idle"].append(row)
        log("  idle: %d sessions in %.1fs, %s: %.1f MB -> %.1f MB = %s bytes/session"
            % (held, r["establish_secs"], "proxy" if peer.roots() else "stores",
               before / 1e6, after / 1e6, "%.0f" % per if per is not None else "-"))

    @staticmethod
    def _read_line(proc, limit):
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + limit
        try:
            while time.monotonic() < deadline:
                if sel.select(timeout=1.0):
                    line = proc.stdout.readline()
                    if not line:
                        raise RuntimeError("imap-load exited: " + proc.stderr.read()[-1000:])
                    return line.strip()
                if proc.poll() is not None:
                    raise RuntimeError("imap-load exited: " + proc.stderr.read()[-1000:])
        finally:
            sel.close()
        raise RuntimeError("imap-load idle did not establish within %ds" % limit)

    # -- the whole run ------------------------------------------------------------

    def serve(self, name, secs):
        """Start the stores and one peer, print where to point imap-load, wait (bounded)."""
        self.start_stores(name)
        peer = self.make_peer(name)
        peer.start()
        try:
            targets = " ".join("--target " + t for t in peer.targets())
            print("%s ready: %s --users %d --password %s; proxy PIDs %s; stores %s"
                  % (peer.label, targets, self.args.users, PASSWORD, peer.roots(),
                     self.store_roots()), flush=True)
            print("work dir %s; stops after %ds or on Ctrl-C" % (self.tmp, secs), flush=True)
            time.sleep(secs)
        finally:
            peer.stop()

    def run(self):
        for name in self.args.peers:
            peer = self.make_peer(name)
            log("=== %s ===" % peer.label)
            self.peer_group = CpuGroup(name)
            self.store_group = CpuGroup(name + "-stores")
            try:
                self.start_stores(name)
                self.store_group.add(self.store_roots())
                peer.start()
                self.peer_group.add(peer.roots())
                self.cpu_method = self.peer_group.method()
                self.warm_up(peer)
                for mode in self.args.modes:
                    getattr(self, "bench_" + mode)(peer)
            except (RuntimeError, TimeoutError, AssertionError, OSError,
                    subprocess.SubprocessError) as e:
                log("%s failed: %s" % (peer.label, e))
                self.notes.append("%s: run failed: %s" % (peer.label, str(e).splitlines()[0]))
            finally:
                peer.stop()
                self.stop_stores()
                self.peer_group.remove()
                self.store_group.remove()
            time.sleep(1.0)

    def stop(self):
        if self.loadgen is not None and self.loadgen.poll() is None:
            self.loadgen.kill()
        self.stop_stores()
        for p in list(_OWN):
            p.stop()
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- report -------------------------------------------------------------------

    def report(self):
        a = self.args
        out = []
        out.append("# Switchyard side-by-side benchmark\n")
        out.append("- date: %s" % datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))
        out.append("- machine: %d CPUs (%s), kernel %s, %s"
                   % (os.cpu_count(), cpu_model(), platform.release(), mem_total()))
        out.append("- versions: %s" % self.versions)
        out.append("- switchyard binary: %s" % self.build_info)
        out.append("- run: `%s`" % " ".join(["bench/run.py"] + sys.argv[1:]))
        out.append("- stores: two Dovecot instances on loopback, users split k %% 2, %d users; "
                   "tuning: imap-login service_count=0 process_min_avail=2, imap service_count=0 "
                   "client_limit=1 (reused processes), auth cache, auth_verbose=no" % a.users)
        out.append("- Switchyard: sqlite map (%d rows), log level %s; nginx: %d workers, "
                   "auth_http served by nginx itself (static map on the user name), "
                   "proxy_buffer %s unless the row says; Perdition: gdbm popmap, -q, --no_lookup"
                   % (a.users, a.sy_log_level, a.nginx_workers,
                      a.nginx_proxy_buffer or "default"))
        out.append("- CPU time measured with: %s" % self.cpu_method)
        out.append("- each logins/bulk row is the median of %d run(s); a run during which "
                   "other work used more than %.0f%% of the machine was run again (up to %d "
                   "times). \"machine busy\": all CPU in use during the run, of %d CPUs; at "
                   "~100%% the peers compete with the stores and imap-load for CPU, so a "
                   "proxy's own CPU cost lowers its rate."
                   % (a.repeat, a.others_limit * 100, a.retries, os.cpu_count() or 1))
        out.append("")
        direct_login = {r["c"]: r["rate"] for r in self.rows["logins"] if r["name"] == "direct"}
        direct_bulk = {r["c"]: r["mbps"] for r in self.rows["bulk"] if r["name"] == "direct"}
        if self.rows["logins"]:
            out.append("## Logins (connect, greeting, LOGIN, LOGOUT, close), %gs per run\n"
                       % a.login_secs)
            out.append("| peer | clients | logins/s | runs (logins/s) | vs direct | login p50 ms | "
                       "login p99 ms | proxy CPU ms/login | store CPU ms/login | errors | "
                       "machine busy | others' CPU |")
            out.append("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for r in self.rows["logins"]:
                d = direct_login.get(r["c"])
                out.append("| %s | %d | %.0f | %s | %s | %.2f | %.2f | %s | %.3f | %d | %.0f%% | %.0f%% |" % (
                    r["peer"], r["c"], r["rate"], " ".join("%.0f" % x for x in r["runs"]),
                    "%.2fx" % (r["rate"] / d) if d else "-",
                    r["p50"], r["p99"], fmt(r["proxy_ms"], 3), r["store_ms"], r["errors"],
                    r["busy"] * 100, r["others"] * 100))
            out.append("")
        if self.rows["bulk"]:
            out.append("## Bulk (FETCH 1 BODY.PEEK[] of a %g MB message, repeated), %gs per run\n"
                       % (a.bulk_mb, a.bulk_secs))
            out.append("| peer | clients | MB/s | runs (MB/s) | vs direct | GB moved | "
                       "proxy CPU ms/GB | store CPU ms/GB | errors | machine busy | "
                       "others' CPU |")
            out.append("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
            for r in self.rows["bulk"]:
                d = direct_bulk.get(r["c"])
                out.append("| %s | %d | %.0f | %s | %s | %.2f | %s | %s | %d | %.0f%% | %.0f%% |" % (
                    r["peer"], r["c"], r["mbps"], " ".join("%.0f" % x for x in r["runs"]),
                    "%.2fx" % (r["mbps"] / d) if d else "-",
                    r["gb"], fmt(r["proxy_ms_gb"], 0), fmt(r["store_ms_gb"], 0), r["errors"],
                    r["busy"] * 100, r["others"] * 100))
            out.append("")
        if self.rows["idle"]:
            out.append("## Idle sessions (logged in, then idle)\n")
            out.append("| peer | sessions | set-up s | Pss before MB | Pss with sessions MB | "
                       "bytes/session (proxy) | bytes/session (stores) | errors |")
            out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
            for r in self.rows["idle"]:
                proxy = "-" if r["direct"] else fmt(r["per_session"], 0)
                before = "-" if r["direct"] else "%.1f" % (r["before"] / 1e6)
                after = "-" if r["direct"] else "%.1f" % (r["after"] / 1e6)
                out.append("| %s | %d | %.1f | %s | %s | %s | %s | %d |" % (
                    r["peer"], r["sessions"], r["secs"], before, after, proxy,
                    fmt(r["store_per_session"], 0), r["errors"]))
            out.append("")
        out.extend(self.budget())
        errs = [r for rows in self.rows.values() for r in rows if r.get("first_error")]
        if errs or self.notes:
            out.append("## Notes\n")
            for n in self.notes:
                out.append("- " + n)
            for r in errs:
                out.append("- %s: first error: %s" % (r["peer"], r["first_error"]))
            out.append("")
        return "\n".join(out)

    def budget(self):
        """Switchyard against DESIGN.md's performance budget."""
        out = []
        direct_login = {r["c"]: r["rate"] for r in self.rows["logins"] if r["name"] == "direct"}
        direct_bulk = {r["c"]: r["mbps"] for r in self.rows["bulk"] if r["name"] == "direct"}
        checks = []
        for r in self.rows["logins"]:
            if not r["name"].startswith("switchyard"):
                continue
            checks.append(("%s c=%d CPU per login <= 0.12 ms" % (r["peer"], r["c"]),
                           "%.3f ms" % r["proxy_ms"], r["proxy_ms"] <= 0.12))
            d = direct_login.get(r["c"])
            if d:
                checks.append(("%s c=%d login rate >= 0.9x direct" % (r["peer"], r["c"]),
                               "%.2fx" % (r["rate"] / d), r["rate"] / d >= 0.9))
        for r in self.rows["bulk"]:
            if not r["name"].startswith("switchyard"):
                continue
            d = direct_bulk.get(r["c"])
            if d:
                checks.append(("%s c=%d bulk >= 0.9x direct" % (r["peer"], r["c"]),
                               "%.2fx" % (r["mbps"] / d), r["mbps"] / d >= 0.9))
            if r["proxy_ms_gb"] is not None:
                checks.append(("%s c=%d CPU per GB <= 250 ms" % (r["peer"], r["c"]),
                               "%.0f ms" % r["proxy_ms_gb"], r["proxy_ms_gb"] <= 250))
        for r in self.rows["idle"]:
            if not r["name"].startswith("switchyard") or r["per_session"] is None:
                continue
            checks.append(("%s <= 4 kB per idle session (%d sessions)"
                           % (r["peer"], r["sessions"]),
                           "%.0f B" % r["per_session"], r["per_session"] <= 4096))
        if checks:
            out.append("## Switchyard against the budget (DESIGN.md)\n")
            out.append("| check | measured | verdict |")
            out.append("|---|---:|---|")
            for what, val, ok in checks:
                out.append("| %s | %s | %s |" % (what, val, "ok" if ok else "**over budget**"))
            out.append("")
        return out


def fmt(v, digits):
    return "-" if v is None else ("%%.%df" % digits) % v


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def mem_total():
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        return "%.0f GiB RAM" % (kb / 1048576)
    except (OSError, ValueError, IndexError):
        return "?"


def versions(binary):
    def run(cmd):
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=10)
            return r.stdout.strip().splitlines()[0] if r.stdout.strip() else "?"
        except (OSError, subprocess.SubprocessError):
            return "?"
    pkg = lambda p: run(["dpkg-query", "-W", "-f=${Version}", p])  # noqa: E731
    return "; ".join([
        run([binary, "-V"]),
        "dovecot %s" % run(["dovecot", "--version"]),
        "nginx %s (libnginx-mod-mail %s)" % (pkg("nginx"), pkg("libnginx-mod-mail")),
        "perdition %s" % pkg("perdition"),
    ])


def git_describe(top):
    """', tree at <commit>[ + local changes]' (read-only git), or ''."""
    try:
        head = subprocess.run(["git", "-C", top, "rev-parse", "--short", "HEAD"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", top, "status", "--porcelain", "--untracked-files=no"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    if not head:
        return ""
    return ", tree at %s%s" % (head, " + local changes" if dirty else "")


def int_list(text):
    return [int(x) for x in text.split(",") if x.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="short runs (whole benchmark < 2 minutes)")
    ap.add_argument("--peers", help="comma list from %s (quick: all but nginx-buf64k)"
                    % ",".join(ALL_PEERS))
    ap.add_argument("--modes", default=",".join(ALL_MODES), help="comma list: logins,bulk,idle")
    ap.add_argument("--login-secs", type=float, help="seconds per login run (10; quick 3)")
    ap.add_argument("--login-concurrency", type=int_list,
                    help="client counts for logins, e.g. 1,16 (full 1,16; quick 16)")
    ap.add_argument("--bulk-secs", type=float, help="seconds per bulk run (10; quick 3)")
    ap.add_argument("--bulk-concurrency", type=int_list, help="client counts (1,4; quick 2)")
    ap.add_argument("--bulk-mb", type=float, default=10, help="size of the fetched message, MB")
    ap.add_argument("--idle-sessions", type=int, help="idle sessions (10000; quick 1000)")
    ap.add_argument("--idle-perdition", type=int,
                    help="cap for Perdition's idle run (one process per session; default: none)")
    ap.add_argument("--idle-ramp", type=int, default=64, help="idle sessions set up at once")
    ap.add_argument("--idle-max-secs", type=int, default=300,
                    help="longest time to establish / hold the idle sessions")
    ap.add_argument("--warmup-secs", type=float, default=2,
                    help="login warm-up per peer (fills Dovecot's process pool, caches)")
    ap.add_argument("--repeat", type=int, help="runs per logins/bulk figure; the median "
                    "run is reported (full 3, quick 1)")
    ap.add_argument("--quiet-wait", type=int, help="longest wait for an idle machine before "
                    "each run, s (full 120, quick 10)")
    ap.add_argument("--quiet-threshold", type=float, default=0.15,
                    help="machine busy fraction counted as idle")
    ap.add_argument("--others-limit", type=float, default=0.15,
                    help="a run during which others used more of the machine is run again")
    ap.add_argument("--retries", type=int, help="how many times again at most (full 3, quick 0)")
    ap.add_argument("--wait-budget", type=int, help="total seconds the whole run may spend "
                    "waiting for a quiet machine (full 3600, quick 15)")
    ap.add_argument("--users", type=int, default=200, help="users in the stores and maps")
    ap.add_argument("--step-timeout", type=float, default=10, help="per-step client timeout")
    ap.add_argument("--sy-log-level", default="notice",
                    help="Switchyard [log] level (info logs one line per login)")
    ap.add_argument("--nginx-workers", type=int, default=2)
    ap.add_argument("--nginx-proxy-buffer", help="nginx mail proxy_buffer (default: nginx's "
                    "own, one page); e.g. 64k")
    ap.add_argument("--switchyard", default=harness.switchyard_binary(),
                    help="switchyard binary")
    ap.add_argument("--output", help="report file (default bench/RESULTS.md; with --quick "
                    "bench/RESULTS-quick.md, so a quick run does not replace the full report)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--serve", metavar="PEER",
                    help="only start the stores and PEER, print their ports, and wait "
                         "(for manual runs of imap-load); bounded by --serve-secs")
    ap.add_argument("--serve-secs", type=int, default=600)
    args = ap.parse_args()
    q = args.quick
    args.login_secs = args.login_secs or (3 if q else 10)
    args.login_concurrency = args.login_concurrency or ([16] if q else [1, 16])
    args.bulk_secs = args.bulk_secs or (3 if q else 10)
    args.bulk_concurrency = args.bulk_concurrency or ([2] if q else [1, 4])
    args.idle_sessions = args.idle_sessions or (1000 if q else 10000)
    args.repeat = args.repeat or (1 if q else 3)
    args.output = args.output or os.path.join(BENCH, "RESULTS-quick.md" if q else "RESULTS.md")
    args.retries = args.retries if args.retries is not None else (0 if q else 3)
    args.wait_budget = args.wait_budget if args.wait_budget is not None else (15 if q else 3600)
    args.quiet_wait = args.quiet_wait if args.quiet_wait is not None else (10 if q else 120)
    args.peers = [p for p in (args.peers or ",".join(
        [p for p in ALL_PEERS if not (q and p == "nginx-buf64k")])).split(",") if p]
    args.modes = [m for m in args.modes.split(",") if m]
    for p in args.peers:
        if p not in ALL_PEERS and not re.match(r"^(switchyard-w\d+|nginx-buf\d+k)$", p):
            ap.error("unknown peer %s" % p)
    for m in args.modes:
        if m not in ALL_MODES:
            ap.error("unknown mode %s" % m)
    if args.users < max(args.bulk_concurrency):
        ap.error("--users must be >= the largest bulk concurrency")

    if not os.access(LOADGEN, os.X_OK):
        subprocess.run(["make", "-C", BENCH], check=True, timeout=300)
    harness.require_file(args.switchyard, "the switchyard binary")
    # Descriptors: as many as the hard limit allows (children inherit it).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass

    # Ctrl-C / SIGTERM: unwind through the finally below, which stops everything by PID.
    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)

    bench = Bench(args)
    started = time.monotonic()
    interrupted = False
    try:
        if args.serve:
            bench.serve(args.serve, args.serve_secs)
            return 0
        bench.run()
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping everything")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        bench.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.serve:
        return 130 if interrupted else 0
    text = bench.report()
    text += "\n_total run time %.0f s%s_\n" % (time.monotonic() - started,
                                               ", interrupted" if interrupted else "")
    print(text)
    if not interrupted:
        with open(args.output, "w") as f:
            f.write(text)
        log("wrote " + args.output)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
