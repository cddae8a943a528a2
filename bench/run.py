#!/usr/bin/env python3
"""Side-by-side IMAP/POP3/LMTP proxy benchmark: direct Dovecot, Switchyard, nginx mail,
Perdition.

Starts two tuned Dovecot stores on loopback (users split between them: user k lives on
store k % 2), then each peer in turn, and drives it with bench/imap-load:

  logins  IMAP logins/s, p50/p99 login latency, proxy CPU ms per login (and the stores' CPU)
  bulk    MB/s of FETCH BODY.PEEK[] of a large message, proxy CPU ms per GB relayed
  idle    N logged-in idle sessions: proxy memory (sum of Pss) per idle session
  pop3    POP3 logins (USER, PASS, QUIT): as logins
  imaps   bulk with a TLS client: the proxy terminates TLS and talks plain to the store
  lmtp    LMTP delivery of small messages, two recipients on different stores each

and then, with Switchyard alone:

  lookups   IMAP logins through a map module with a fixed latency (tests/modules/
            latencymap), no lookup cache, at [lookup] concurrency default and 1
  ldapstop  logins of cached users with a real slapd running, then SIGSTOPped while
            logins of uncached users hang on it

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
from harness import (Dovecot, LineClient, Switchyard, make_sqlite_map,  # noqa: E402
                     toml_string, wait_port)

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
service pop3-login {
  service_count = 0
  process_min_avail = 2
  client_limit = 10000
}
service pop3 {
  service_count = 0
  client_limit = 1
  process_min_avail = 4
  process_limit = 12000
}
protocol pop3 {
  mail_max_userip_connections = 100000
}
service lmtp {
  service_count = 0
  client_limit = 1
  process_min_avail = 4
}
protocol lmtp {
  # Recipients are user%d@bench.test; the passwd-file knows user%d.
  auth_username_format = %n
}
"""

ALL_PEERS = ["direct", "switchyard-w2", "switchyard-w1", "nginx", "nginx-buf64k", "perdition"]
PEER_MODES = ["logins", "bulk", "idle", "pop3", "imaps", "lmtp"]
SCENARIO_MODES = ["lookups", "ldapstop"]
ALL_MODES = PEER_MODES + SCENARIO_MODES
RCPT_FMT = "user%d@bench.test"
LAT_FMT = "lat%d"   # users of the lookups / ldapstop scenarios, all on store0


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

    def _usage(self, name):
        """A cpuacct counter in seconds, or None without the group."""
        if self.path:
            try:
                with open(os.path.join(self.path, name)) as f:
                    return int(f.read()) / 1e9
            except OSError:
                pass
        return None

    def seconds(self):
        s = self._usage("cpuacct.usage")
        return s if s is not None else cpu_seconds(self.roots)

    def kernel_seconds(self):
        """The part of seconds() spent in the kernel (system time), or None."""
        return self._usage("cpuacct.usage_sys")

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

def backend_tables(stores):
    """[backend.storeN] tables with the IMAP, POP3 and LMTP ports of each store."""
    return "".join("[backend.store%d]\nhost = [\"%s\"]\nimap = %d\npop3 = %d\nlmtp = %d\n"
                   "connect_timeout = \"2s\"\n\n" % (i, HOST, s.imap_port, s.pop3_port,
                                                      s.lmtp_port)
                   for i, s in enumerate(stores))


def sy_config(ctx, listeners, maps, workers, lookup=None, tls=None, level=None):
    """A Switchyard config. listeners: [(protocol, port)]; maps: [(module, options)];
    lookup: {key: TOML value text} for [lookup]; tls: (cert, key)."""
    parts = ["# Written by bench/run.py.\n",
             "workers = %d\n" % workers,
             "map_dir = %s\n\n" % toml_string(os.path.dirname(ctx.sqlite_module)),
             "[log]\ntarget = \"stderr\"\nlevel = %s\n\n"
             % toml_string(level or ctx.args.sy_log_level)]
    for proto, port in listeners:
        parts.append("[[listen]]\nprotocol = \"%s\"\naddress = \"%s:%d\"\n\n" % (proto, HOST, port))
    if tls:
        parts.append("[tls]\ncert = %s\nkey = %s\n\n" % (toml_string(tls[0]), toml_string(tls[1])))
    for module, options in maps:
        parts.append("[[map]]\nmodule = %s\noptions = %s\n\n"
                     % (toml_string(module), toml_string(options)))
    # All the load comes from 127.0.0.1: no per-address limit may refuse it.
    lk = {"per_client_limit": "100000", "queue_limit": "100000"}
    lk.update(lookup or {})
    parts.append("[lookup]\n" + "".join("%s = %s\n" % kv for kv in lk.items()) + "\n")
    parts.append("[limits]\nlogin_timeout = \"60s\"\nidle_timeout = \"30m\"\n"
                 "max_prelogin_sessions = 100000\nmax_prelogin_per_ip = 100000\n"
                 "auth_failure_delay = \"0s\"\n\n")
    parts.append("[lmtp]\nstore_timeout = \"30s\"\n\n")
    parts.append(backend_tables(ctx.stores))
    return "".join(parts)


class Peer:
    name = "?"
    label = "?"
    modes = ("logins", "bulk", "idle", "pop3")

    def __init__(self, ctx):
        self.ctx = ctx
        self.ports = {}

    def start(self):
        pass

    def stop(self):
        pass

    def targets(self, proto="imap"):
        return ["%s:%d" % (HOST, self.ports[proto])]

    def roots(self):
        """PIDs whose process trees are this proxy (empty for direct Dovecot)."""
        return []

    def fd_capacity_sessions(self):
        """How many proxied sessions fit in this peer's descriptor limits (None: no limit)."""
        return None


class Direct(Peer):
    name = "direct"
    label = "direct Dovecot"
    modes = tuple(PEER_MODES)

    def targets(self, proto="imap"):
        attr = {"imap": "imap_port", "pop3": "pop3_port", "imaps": "imaps_port",
                "lmtp": "lmtp_port"}[proto]
        return ["%s:%d" % (HOST, getattr(s, attr)) for s in self.ctx.stores]


class SwitchyardPeer(Peer):
    modes = tuple(PEER_MODES)

    def __init__(self, ctx, workers):
        super().__init__(ctx)
        self.workers = workers
        self.name = "switchyard-w%d" % workers
        self.label = "Switchyard workers=%d" % workers
        self.proxy = None

    def start(self):
        ctx = self.ctx
        protos = ["imap", "pop3", "lmtp"] + (["imaps"] if ctx.tls else [])
        self.ports = dict(zip(protos, harness.free_ports(len(protos))))
        config = sy_config(ctx, [(p, self.ports[p]) for p in protos],
                           [(ctx.sqlite_module, ctx.map_path)], self.workers, tls=ctx.tls)
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
    modes = ("logins", "bulk", "idle", "pop3", "imaps")

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
        self.ports["imap"], self.ports["pop3"], self.ports["imaps"], self.auth_port = \
            harness.free_ports(4)
        workdir = harness.make_workdir(os.path.join(ctx.tmp, "nginx-"))
        s0, s1 = ctx.stores[0], ctx.stores[1]
        conns = min(ctx.nofile - 100, 20000)
        buf = ("\n    proxy_buffer %s;" % self.proxy_buffer if self.proxy_buffer else "")
        imaps = ""
        if ctx.tls:
            imaps = """
  server {{
    listen {host}:{port} ssl;
    protocol imap;
    proxy on;
    imap_auth login plain;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate {cert};
    ssl_certificate_key {key};{buf}
  }}""".format(host=HOST, port=self.ports["imaps"], cert=ctx.tls[0], key=ctx.tls[1], buf=buf)
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
  # The "map lookup": user k lives on store k % 2 (even last digit: store0); the port
  # is the store's port for the protocol (regular expressions are tried in order).
  map "$http_auth_protocol:$http_auth_user" $store_port {{
    ~^pop3:.*[02468]$ {q0};
    ~^pop3:           {q1};
    ~[02468]$         {p0};
    default           {p1};
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
    imap_auth login plain;{buf}
  }}
  server {{
    listen {host}:{pop3_port};
    protocol pop3;
    proxy on;
    pop3_auth plain;{buf}
  }}{imaps}
}}
""".format(workers=ctx.args.nginx_workers, w=workdir, nofile=ctx.nofile, conns=conns,
           p0=s0.imap_port, p1=s1.imap_port, q0=s0.pop3_port, q1=s1.pop3_port, host=HOST,
           auth_port=self.auth_port, port=self.ports["imap"], pop3_port=self.ports["pop3"],
           buf=buf, imaps=imaps)
        conf_path = os.path.join(workdir, "nginx.conf")
        with open(conf_path, "w") as f:
            f.write(conf)
        self.proc = OwnProcess(["nginx", "-p", workdir, "-e", os.path.join(workdir, "error.log"),
                                "-c", conf_path], workdir, "nginx", self.ports["imap"])
        self.proc.start()
        for port in [self.auth_port, self.ports["pop3"]] + ([self.ports["imaps"]] if ctx.tls else []):
            wait_port(HOST, port, 15.0, self.proc.process, self.proc.describe)

    def stop(self):
        if getattr(self, "proc", None):
            self.proc.stop()

    def roots(self):
        return [self.proc.pid] if self.proc.pid else []

    def fd_capacity_sessions(self):
        return self.ctx.args.nginx_workers * (self.ctx.nofile - 200) // 2


class PerditionPeer(Peer):
    """Two Perditions: -P IMAP4 and -P POP3, each with its own popmap (the store ports)."""
    name = "perdition"
    label = "Perdition"

    def start(self):
        ctx = self.ctx
        self.procs = []
        self.ports["imap"], self.ports["pop3"] = harness.free_ports(2)
        workdir = harness.make_workdir(os.path.join(ctx.tmp, "perdition-"))
        empty_conf = os.path.join(workdir, "perdition.conf")
        open(empty_conf, "w").close()
        lib = "/usr/lib/x86_64-linux-gnu/libperditiondb_gdbm.so.0"
        for proto, flag, attr in (("imap", "IMAP4", "imap_port"), ("pop3", "POP3", "pop3_port")):
            popmap = os.path.join(workdir, "popmap-" + proto)
            with open(popmap, "w") as f:
                for k in range(ctx.args.users):
                    f.write("%s:%s:%d\n" % (ctx.user(k), HOST, getattr(ctx.stores[k % 2], attr)))
            db = popmap + ".db"
            with open(popmap, "rb") as src:
                subprocess.run(["makegdbm", db], stdin=src, check=True, timeout=60)
            os.chmod(db, 0o644)
            argv = ["perdition", "-f", empty_conf, "-P", flag, "--no_daemon",
                    "-b", HOST, "-l", str(self.ports[proto]), "-M", lib, "-m", db,
                    "--ssl_mode", "none", "--no_lookup", "-q", "-F", "+",
                    "-u", "nobody", "-g", "nogroup", "--connection_limit", "0",
                    "--pid_file", os.path.join(workdir, "perdition-%s.pid" % proto)]
            proc = OwnProcess(argv, workdir, "perdition-" + proto, self.ports[proto])
            proc.start()
            self.procs.append(proc)

    def stop(self):
        for proc in getattr(self, "procs", []):
            proc.stop()

    def roots(self):
        return [p.pid for p in getattr(self, "procs", []) if p.pid]


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
        self.rows = {m: [] for m in ALL_MODES}
        self.notes = []
        self.loadgen = None  # the imap-load Popen in flight
        self.wait_budget = args.wait_budget  # seconds of waiting for quiet left, in all
        self.cpu_method = "?"
        self.slapd = None
        self.snapshot_build()
        self.tls = None
        if "imaps" in args.modes:
            d = os.path.join(self.tmp, "tls")
            self.tls = harness.make_cert(d, "proxy", harness.make_ca(d))

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
        # The modules of the scenarios, when they run.
        self.ldap_module = self.latency_module = None
        if "ldapstop" in self.args.modes:
            src = os.path.join(os.path.dirname(src_map), "ldap.so")
            harness.require_file(src, "the ldap map module (configure found no libldap?)")
            self.ldap_module = os.path.join(d, "ldap.so")
            shutil.copy2(src, self.ldap_module)
        if "lookups" in self.args.modes:
            src = harness.test_module("latencymap")
            if not os.path.exists(src):
                log("building tests/modules/latencymap.la")
                subprocess.run(["make", "-C", harness.build_dir(), "tests/modules/latencymap.la"],
                               check=False, timeout=600, stdout=subprocess.DEVNULL)
            harness.require_file(src, "tests/modules/.libs/latencymap.so (make "
                                 "tests/modules/latencymap.la)")
            self.latency_module = os.path.join(d, "latencymap.so")
            shutil.copy2(src, self.latency_module)
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

    def bulk_users(self):
        """Users with the large message: enough for the bulk and the imaps clients."""
        n = 0
        if "bulk" in self.args.modes:
            n = max(self.args.bulk_concurrency)
        if "imaps" in self.args.modes:
            n = max([n] + self.args.imaps_concurrency)
        return n

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
            if i == 0 and any(m in self.args.modes for m in SCENARIO_MODES):
                mine.update({LAT_FMT % k: PASSWORD for k in range(self.args.users)})
            self.stores.append(Dovecot("bench%d" % i, os.path.join(base, "store%d" % i),
                                       users=mine, extra_conf=DOVECOT_TUNING, tls=self.tls))
        # One large message in the INBOX of each bulk user (users 0 .. bulk clients - 1).
        size = int(self.args.bulk_mb * 1e6)
        line = b"x" * 76 + b"\r\n"
        body = line * (size // len(line) + 1)
        raw = (b"From: bench@example.invalid\r\nTo: user@example.invalid\r\n"
               b"Subject: bulk\r\n\r\n" + body)[:size]
        for k in range(self.bulk_users()):
            self.stores[k % 2].add_message(self.user(k), raw)
        # The map: login names (IMAP, POP3) and recipient addresses (LMTP).
        self.map_path = make_sqlite_map(
            os.path.join(base, "users.db"),
            [(self.user(k), "store%d" % (k % 2)) for k in range(self.args.users)] +
            [(RCPT_FMT % k, "store%d" % (k % 2)) for k in range(self.args.users)])
        log("stores on ports %s, work dir %s"
            % (", ".join(str(s.imap_port) for s in self.stores), base))

    def stop_stores(self):
        for store in self.stores:
            store.stop()
        self.stores = []
        if getattr(self, "store_group", None):
            self.store_group.remove()
            self.store_group = None
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

    def loadgen_cmd(self, mode, peer, extra, proto="imap", targets=None):
        cmd = [LOADGEN, mode]
        for t in targets or peer.targets(proto):
            cmd += ["--target", t]
        if proto == "pop3":
            cmd += ["--proto", "pop3"]
        if proto == "imaps":
            cmd += ["--tls"]
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
        if self.args.smoke:
            return 0.0
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
        k0 = pg.kernel_seconds()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        b0, t0 = sys_cpu()
        w0 = time.monotonic()
        result = fn()
        w1 = time.monotonic()
        b1, t1 = sys_cpu()
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        p1, s1 = pg.seconds(), sg.seconds()
        k1 = pg.kernel_seconds()
        # The proxy's kernel share: what no change to its own code can take away.
        self.last_proxy_kernel = (k1 - k0) / (p1 - p0) if k0 is not None and k1 is not None \
            and p1 > p0 else None
        load = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        others = (b1 - b0) - (p1 - p0) - (s1 - s0) - load
        capacity = max((w1 - w0) * (os.cpu_count() or 1), 1e-9)
        share = max(others, 0.0) / capacity
        self.last_busy = (b1 - b0) / capacity
        return result, p1 - p0, s1 - s0, share, load

    def warm_up(self, peer, proto="imap", concurrency=None, targets=None, extra=()):
        c = str(concurrency or max(self.args.login_concurrency))
        cmd = self.loadgen_cmd("logins", peer, ["-c", c, "-d", str(self.args.warmup_secs),
                                                "--max-time", "60"] + list(extra),
                               proto=proto, targets=targets)
        r = self.run_loadgen(cmd, 90)
        if r.get("logins", 0) == 0:
            raise RuntimeError("%s: warm-up %s logins all failed: %s" % (peer.name, proto, r))

    @staticmethod
    def median_row(rows, key):
        rows = sorted(rows, key=lambda r: r[key])
        row = dict(rows[len(rows) // 2])
        row["runs"] = [r[key] for r in rows]
        return row

    def bench_pop3(self, peer):
        self.warm_up(peer, "pop3", max(self.args.pop3_concurrency))
        self.bench_logins(peer, "pop3")

    def bench_logins(self, peer, proto="imap"):
        key = "pop3" if proto == "pop3" else "logins"
        concurrency = self.args.pop3_concurrency if proto == "pop3" else self.args.login_concurrency
        for c in concurrency:
            runs = []
            for _ in range(self.args.repeat):
                cmd = self.loadgen_cmd("logins", peer, ["-c", str(c), "-d", str(self.args.login_secs),
                                                        "--max-time", str(self.args.login_secs + 60)],
                                       proto=proto)
                r, pcpu, scpu, others, lcpu = self.clean_run(peer, lambda: self.run_loadgen(
                    cmd, self.args.login_secs + 90))
                n = max(r["logins"], 1)
                row = {"peer": peer.label, "name": peer.name, "c": c, "rate": r["rate"],
                       "p50": r["login_p50_ms"], "p99": r["login_p99_ms"],
                       "cycle_p50": r["cycle_p50_ms"], "errors": r["errors"],
                       "logins": r["logins"],
                       "proxy_ms": pcpu * 1000 / n if peer.roots() else None,
                       "proxy_kernel": self.last_proxy_kernel if peer.roots() else None,
                       "store_ms": scpu * 1000 / n, "load_ms": lcpu * 1000 / n,
                       "others": others, "busy": self.last_busy,
                       "first_error": r.get("first_error")}
                runs.append(row)
                log("  %s logins c=%d: %.0f/s p50 %.2f ms p99 %.2f ms proxy %s ms/login "
                    "errors %d, others %.0f%%"
                    % (proto, c, row["rate"], row["p50"], row["p99"],
                       "%.3f" % row["proxy_ms"] if row["proxy_ms"] is not None else "-",
                       row["errors"], others * 100))
            self.rows[key].append(self.median_row(runs, "rate"))

    def bench_imaps(self, peer):
        self.bench_bulk(peer, "imaps")

    def bench_bulk(self, peer, proto="imap"):
        key = "imaps" if proto == "imaps" else "bulk"
        concurrency = self.args.imaps_concurrency if proto == "imaps" else self.args.bulk_concurrency
        for c in concurrency:
            runs = []
            for _ in range(self.args.repeat):
                cmd = self.loadgen_cmd("bulk", peer, ["-c", str(c), "-d", str(self.args.bulk_secs),
                                                      "--max-time", str(self.args.bulk_secs + 60)],
                                       proto=proto)
                r, pcpu, scpu, others, lcpu = self.clean_run(peer, lambda: self.run_loadgen(
                    cmd, self.args.bulk_secs + 90))
                gb = r["bytes"] / 1e9
                row = {"peer": peer.label, "name": peer.name, "c": c, "mbps": r["mb_per_s"],
                       "gb": gb, "errors": r["errors"],
                       "proxy_ms_gb": pcpu * 1000 / gb if peer.roots() and gb > 0 else None,
                       "store_ms_gb": scpu * 1000 / gb if gb > 0 else None,
                       "load_ms_gb": lcpu * 1000 / gb if gb > 0 else None,
                       "others": others, "busy": self.last_busy, "tls": r.get("tls", "-"),
                       "first_error": r.get("first_error")}
                runs.append(row)
                log("  %s bulk c=%d: %.0f MB/s (%.2f GB) proxy %s ms/GB errors %d, others %.0f%%"
                    % (proto, c, row["mbps"], gb, "%.0f" % row["proxy_ms_gb"]
                       if row["proxy_ms_gb"] is not None else "-", row["errors"], others * 100))
            self.rows[key].append(self.median_row(runs, "mbps"))

    def bench_lmtp(self, peer):
        """A fixed number of messages over C connections; direct Dovecot gets each message
        as one transaction per store (imap-load --split), the proxy as one transaction."""
        split = not peer.roots()
        n = self.args.lmtp_messages
        for c in self.args.lmtp_concurrency:
            runs = []
            for _ in range(self.args.repeat):
                cmd = self.loadgen_cmd("lmtp", peer, [
                    "-c", str(c), "-n", str(n), "-d", str(self.args.lmtp_max_secs),
                    "--max-time", str(self.args.lmtp_max_secs + 60), "--rcpt-fmt", RCPT_FMT,
                    "--rcpts", "2", "--msg-size", str(self.args.lmtp_size)]
                    + (["--split"] if split else []), proto="lmtp")
                r, pcpu, scpu, others, lcpu = self.clean_run(peer, lambda: self.run_loadgen(
                    cmd, self.args.lmtp_max_secs + 90))
                m = max(r["messages"], 1)
                row = {"peer": peer.label, "name": peer.name, "c": c, "rate": r["rate"],
                       "messages": r["messages"], "rcpt_ok": r["rcpt_ok"],
                       "p50": r["msg_p50_ms"], "p99": r["msg_p99_ms"], "errors": r["errors"],
                       "proxy_ms": pcpu * 1000 / m if peer.roots() else None,
                       "store_ms": scpu * 1000 / m, "others": others, "busy": self.last_busy,
                       "split": split, "first_error": r.get("first_error")}
                runs.append(row)
                log("  lmtp c=%d: %d messages, %.0f/s p50 %.2f ms p99 %.2f ms proxy %s "
                    "ms/message errors %d" % (c, r["messages"], row["rate"], row["p50"],
                                              row["p99"], fmt(row["proxy_ms"], 3),
                                              row["errors"]))
            self.rows["lmtp"].append(self.median_row(runs, "rate"))

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

    # -- Switchyard-only scenarios --------------------------------------------------

    class _Proxy(Peer):
        """A Switchyard of a scenario (its own config), measured like a peer."""

        def __init__(self, ctx, name, label, config_fn, workers):
            super().__init__(ctx)
            self.name, self.label, self.workers = name, label, workers
            self.ports = {"imap": harness.free_port()}
            self.proxy = Switchyard(ctx.switchyard, os.path.join(ctx.tmp, name),
                                    config_fn(self.ports["imap"]))

        def stop(self):
            self.proxy.stop()

        def roots(self):
            return [self.proxy.pid] if self.proxy.pid else []

    def run_scenario_proxy(self, name, label, config_fn, workers, body):
        """Start a Switchyard for a scenario, account its CPU, run body(peer), stop it."""
        self.peer_group = CpuGroup(name)
        peer = None
        try:
            peer = self._Proxy(self, name, label, config_fn, workers)
            self.peer_group.add(peer.roots())
            body(peer)
        except (RuntimeError, TimeoutError, AssertionError, OSError,
                subprocess.SubprocessError) as e:
            log("%s failed: %s" % (label, e))
            self.notes.append("%s: run failed: %s" % (label, str(e).splitlines()[0]))
        finally:
            if peer:
                peer.stop()
            self.peer_group.remove()

    def lat_logins(self, peer, c, extra=(), users=None):
        """One measured run of IMAP logins of the lat%d users (all on store0)."""
        secs = self.args.login_secs
        cmd = self.loadgen_cmd("logins", peer, [
            "-c", str(c), "-d", str(secs), "--max-time", str(secs + 60),
            "--user-fmt", LAT_FMT] + list(extra))
        if users:
            cmd[cmd.index("--users") + 1] = str(users)
        r, pcpu, scpu, others, lcpu = self.clean_run(peer, lambda: self.run_loadgen(cmd, secs + 90))
        n = max(r["logins"], 1)
        return {"rate": r["rate"], "p50": r["login_p50_ms"], "p99": r["login_p99_ms"],
                "logins": r["logins"], "errors": r["errors"], "proxy_ms": pcpu * 1000 / n,
                "others": others, "busy": self.last_busy, "first_error": r.get("first_error")}

    def bench_lookups(self):
        """Logins through latencymap (every lookup takes MS ms), no cache, c clients."""
        a = self.args
        for ms in a.lookup_latencies:
            for conc in a.lookup_threads:
                label = "latencymap %d ms, [lookup] concurrency %s" % (
                    ms, conc if conc else "default")
                lookup = {"cache_size": "0"}
                if conc:
                    lookup["concurrency"] = str(conc)

                def config(port, ms=ms, lookup=lookup):
                    return sy_config(self, [("imap", port)],
                                     [(self.latency_module, "%d;store0" % ms)],
                                     a.scenario_workers, lookup=lookup)

                def body(peer, ms=ms, conc=conc, label=label):
                    self.warm_up(peer, concurrency=a.lookup_clients,
                                 extra=["--user-fmt", LAT_FMT])
                    for c in [a.lookup_clients]:
                        row = self.lat_logins(peer, c)
                        row.update({"peer": label, "ms": ms, "threads": conc or "default",
                                    "workers": a.scenario_workers, "c": c})
                        self.rows["lookups"].append(row)
                        log("  %s c=%d: %.0f logins/s p50 %.2f ms p99 %.2f ms errors %d"
                            % (label, c, row["rate"], row["p50"], row["p99"], row["errors"]))

                log("=== Switchyard, %s ===" % label)
                self.run_scenario_proxy("lookups-%d-%s" % (ms, conc or "d"), "Switchyard " + label,
                                        config, a.scenario_workers, body)

    def bench_ldapstop(self):
        """Cached users' logins with slapd answering, then with slapd SIGSTOPped while
        logins of uncached users wait on it."""
        from slapd import Slapd  # tests/integration/slapd.py
        a = self.args
        cached, hung = a.ldap_cached, a.ldap_hung
        if cached + hung > a.users:
            raise RuntimeError("--ldap-cached + --ldap-hung must be <= --users")
        log("=== Switchyard, ldap map, SIGSTOPped slapd ===")
        self.slapd = Slapd(os.path.join(self.tmp, "slapd"), debug_level=a.slapd_debug)
        from slapd import MAILBOX
        ldif = "".join("dn: uid=%s,%s\nobjectClass: perditionPopmap\nobjectClass: uidObject\n"
                       "uid: %s\nmailhost: store0\n\n" % (LAT_FMT % k, MAILBOX, LAT_FMT % k)
                       for k in range(cached + hung))
        self.slapd.add_entries(ldif)
        timeout = int(a.login_secs + 30)
        options = self.slapd.map_options(extensions="x-timeout=%d" % timeout)

        def config(port):
            return sy_config(self, [("imap", port)], [(self.ldap_module, options)],
                             a.scenario_workers,
                             lookup={"timeout": toml_string("%ds" % timeout),
                                     "cache_ttl": toml_string("1h")})

        def body(peer):
            # Warm every worker's cache: several rounds over the cached users (which worker
            # takes a connection is the kernel's choice).
            rounds = 8 * max(peer.workers, 1)
            cmd = self.loadgen_cmd("logins", peer, [
                "-c", str(min(a.ldap_clients, cached)), "-n", str(cached * rounds), "-d", "60",
                "--max-time", "90", "--user-fmt", LAT_FMT])
            cmd[cmd.index("--users") + 1] = str(cached)
            r = self.run_loadgen(cmd, 120)
            if r["errors"]:
                raise RuntimeError("warming the cache: %s" % r)
            row = self.lat_logins(peer, a.ldap_clients, users=cached)
            row.update({"peer": "slapd answering", "c": a.ldap_clients, "hung": "-"})
            self.rows["ldapstop"].append(row)
            log("  slapd answering: %.0f logins/s p50 %.2f ms p99 %.2f ms errors %d"
                % (row["rate"], row["p50"], row["p99"], row["errors"]))
            waiting = []
            os.kill(self.slapd.pid, signal.SIGSTOP)
            stopped_at = time.monotonic()
            try:
                for k in range(cached, cached + hung):
                    cl = LineClient(HOST, peer.ports["imap"], timeout=timeout + 30)
                    cl.readline()
                    cl.send(b"h LOGIN %s %s\r\n" % ((LAT_FMT % k).encode(), PASSWORD.encode()))
                    waiting.append(cl)
                row = self.lat_logins(peer, a.ldap_clients, users=cached)
            finally:
                os.kill(self.slapd.pid, signal.SIGCONT)
            stopped = time.monotonic() - stopped_at
            answers = {}
            for cl in waiting:
                try:
                    words = cl.readline(timeout=timeout + 30).decode("ascii", "replace").split()
                    key = words[1] if len(words) > 1 else "?"
                    if len(words) > 2 and words[2].startswith("[") and \
                            not words[2].startswith("[CAPABILITY"):
                        key += " " + words[2]
                except (OSError, EOFError) as e:
                    key = type(e).__name__
                answers[key] = answers.get(key, 0) + 1
                cl.close()
            hung_text = "%d waiting on slapd: %s" % (hung, ", ".join(
                "%d %s" % (v, k) for k, v in sorted(answers.items())))
            row.update({"peer": "slapd SIGSTOPped (%.1f s)" % stopped, "c": a.ldap_clients,
                        "hung": hung_text})
            self.rows["ldapstop"].append(row)
            log("  slapd stopped: %.0f logins/s p50 %.2f ms p99 %.2f ms errors %d; %s"
                % (row["rate"], row["p50"], row["p99"], row["errors"], hung_text))

        try:
            self.run_scenario_proxy("ldapstop", "Switchyard ldap map, slapd SIGSTOPped",
                                    config, a.scenario_workers, body)
        finally:
            self.slapd.stop()
            self.slapd = None

    # -- the whole run ------------------------------------------------------------

    def serve(self, name, secs):
        """Start the stores and one peer, print where to point imap-load, wait (bounded)."""
        self.ensure_stores(name)
        peer = self.make_peer(name)
        peer.start()
        try:
            for proto in ("imap", "pop3", "imaps", "lmtp"):
                if proto == "imaps" and not self.tls:
                    continue
                try:
                    targets = " ".join("--target " + t for t in peer.targets(proto))
                except (KeyError, AttributeError, TypeError):
                    continue
                print("%s %s: %s --users %d --password %s" % (peer.label, proto, targets,
                                                            self.args.users, PASSWORD))
            print("proxy PIDs %s; stores %s" % (peer.roots(), self.store_roots()), flush=True)
            print("work dir %s; stops after %ds or on Ctrl-C" % (self.tmp, secs), flush=True)
            time.sleep(secs)
        finally:
            peer.stop()

    def run(self):
        shared = self.args.shared_stores
        peer_modes = [m for m in self.args.modes if m in PEER_MODES]
        for name in self.args.peers if peer_modes else []:
            peer = self.make_peer(name)
            modes = [m for m in peer_modes if m in peer.modes]
            if not modes:
                continue
            log("=== %s ===" % peer.label)
            self.peer_group = CpuGroup(name)
            try:
                self.ensure_stores("stores" if shared else name)
                peer.start()
                self.peer_group.add(peer.roots())
                self.cpu_method = self.peer_group.method()
                self.warm_up(peer)
                for mode in modes:
                    getattr(self, "bench_" + mode)(peer)
            except (RuntimeError, TimeoutError, AssertionError, OSError,
                    subprocess.SubprocessError) as e:
                log("%s failed: %s" % (peer.label, e))
                self.notes.append("%s: run failed: %s" % (peer.label, str(e).splitlines()[0]))
            finally:
                peer.stop()
                if not shared:
                    self.stop_stores()
                self.peer_group.remove()
            if not self.args.smoke:
                time.sleep(1.0)
        scenarios = [m for m in self.args.modes if m in SCENARIO_MODES]
        if scenarios:
            try:
                self.ensure_stores("stores" if shared else "scenarios")
                for mode in scenarios:
                    try:
                        getattr(self, "bench_" + mode)()
                    except (RuntimeError, TimeoutError, AssertionError, OSError,
                            subprocess.SubprocessError) as e:
                        log("%s failed: %s" % (mode, e))
                        self.notes.append("%s: run failed: %s" % (mode, str(e).splitlines()[0]))
            finally:
                self.stop_stores()
        self.stop_stores()

    def ensure_stores(self, tag):
        """Fresh stores (or, with --shared-stores, the running ones), their CPU accounted."""
        if self.args.shared_stores and self.stores:
            return
        self.start_stores(tag)
        self.store_group = CpuGroup(tag + "-stores")
        self.store_group.add(self.store_roots())

    def stop(self):
        if self.loadgen is not None and self.loadgen.poll() is None:
            self.loadgen.kill()
        if self.slapd is not None:
            try:
                os.kill(self.slapd.pid, signal.SIGCONT)
            except (ProcessLookupError, TypeError):
                pass
            self.slapd.stop()
        self.stop_stores()
        for p in list(_OWN):
            p.stop()
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- report -------------------------------------------------------------------

    def report(self):
        a = self.args
        out = []
        out.append("# Switchyard side-by-side benchmark%s\n"
                   % (" (smoke run: the figures mean nothing)" if a.smoke else ""))
        out.append("- date: %s" % datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))
        out.append("- machine: %d CPUs (%s), kernel %s, %s"
                   % (os.cpu_count(), cpu_model(), platform.release(), mem_total()))
        out.append("- versions: %s" % self.versions)
        out.append("- switchyard binary: %s" % self.build_info)
        out.append("- run: `%s`" % " ".join(["bench/run.py"] + sys.argv[1:]))
        out.append("- stores: two Dovecot instances on loopback, users split k %% 2, %d users; "
                   "tuning: imap-login service_count=0 process_min_avail=2, imap service_count=0 "
                   "client_limit=1 (reused processes), auth cache, auth_verbose=no" % a.users)
        out.append("- Switchyard: sqlite map (%d rows), log level %s, [lookup] per_client_limit "
                   "raised (all clients are 127.0.0.1); nginx: %d workers, "
                   "auth_http served by nginx itself (static map on the protocol and user name), "
                   "proxy_buffer %s unless the row says, imaps: listen ... ssl; Perdition: gdbm "
                   "popmap, -q, --no_lookup, one instance per protocol"
                   % (2 * a.users, a.sy_log_level, a.nginx_workers,
                      a.nginx_proxy_buffer or "default"))
        out.append("- CPU time measured with: %s" % self.cpu_method)
        out.append("- each logins/pop3/bulk/imaps/lmtp row is the median of %d run(s); the "
                   "lookups and ldapstop rows are single runs; a run during which "
                   "other work used more than %.0f%% of the machine was run again (up to %d "
                   "times). \"machine busy\": all CPU in use during the run, of %d CPUs; at "
                   "~100%% the peers compete with the stores and imap-load for CPU, so a "
                   "proxy's own CPU cost lowers its rate."
                   % (a.repeat, a.others_limit * 100, a.retries, os.cpu_count() or 1))
        out.append("")
        titles = {
            "logins": "## IMAP logins (connect, greeting, LOGIN, LOGOUT, close), %gs per run\n"
                      % a.login_secs,
            "pop3": "## POP3 logins (connect, greeting, USER, PASS, QUIT, close), %gs per run\n"
                    % a.login_secs,
            "bulk": "## Bulk (FETCH 1 BODY.PEEK[] of a %g MB message, repeated), %gs per run\n"
                    % (a.bulk_mb, a.bulk_secs),
            "imaps": "## imaps bulk (a TLS client; the proxy talks plain to the store; direct "
                     "Dovecot: TLS to the store itself), FETCH of a %g MB message, %gs per "
                     "run\n" % (a.bulk_mb, a.bulk_secs),
        }
        for key in ("logins", "pop3"):
            rows = self.rows[key]
            if not rows:
                continue
            direct = {r["c"]: r["rate"] for r in rows if r["name"] == "direct"}
            out.append(titles[key])
            out.append("| peer | clients | logins/s | runs (logins/s) | vs direct | login p50 ms | "
                       "login p99 ms | proxy CPU ms/login | of which kernel | "
                       "store CPU ms/login | errors | machine busy | others' CPU |")
            out.append("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for r in rows:
                d = direct.get(r["c"])
                k = r.get("proxy_kernel")
                out.append("| %s | %d | %.0f | %s | %s | %.2f | %.2f | %s | %s | %.3f | %d | %.0f%% | %.0f%% |" % (
                    r["peer"], r["c"], r["rate"], " ".join("%.0f" % x for x in r["runs"]),
                    "%.2fx" % (r["rate"] / d) if d else "-",
                    r["p50"], r["p99"], fmt(r["proxy_ms"], 3),
                    "%.0f%%" % (k * 100) if k is not None else "-", r["store_ms"], r["errors"],
                    r["busy"] * 100, r["others"] * 100))
            out.append("")
        for key in ("bulk", "imaps"):
            rows = self.rows[key]
            if not rows:
                continue
            direct = {r["c"]: r["mbps"] for r in rows if r["name"] == "direct"}
            out.append(titles[key])
            out.append("| peer | clients | MB/s | runs (MB/s) | vs direct | GB moved | "
                       "proxy CPU ms/GB | store CPU ms/GB | errors | machine busy | "
                       "others' CPU |%s" % (" TLS |" if key == "imaps" else ""))
            out.append("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|%s"
                       % ("---|" if key == "imaps" else ""))
            for r in rows:
                d = direct.get(r["c"])
                out.append("| %s | %d | %.0f | %s | %s | %.2f | %s | %s | %d | %.0f%% | %.0f%% |%s" % (
                    r["peer"], r["c"], r["mbps"], " ".join("%.0f" % x for x in r["runs"]),
                    "%.2fx" % (r["mbps"] / d) if d else "-",
                    r["gb"], fmt(r["proxy_ms_gb"], 0), fmt(r["store_ms_gb"], 0), r["errors"],
                    r["busy"] * 100, r["others"] * 100,
                    (" %s |" % r.get("tls", "-")) if key == "imaps" else ""))
            out.append("")
        if self.rows["lmtp"]:
            rows = self.rows["lmtp"]
            direct = {r["c"]: r["rate"] for r in rows if r["name"] == "direct"}
            out.append("## LMTP delivery (%d messages of %d bytes, two recipients on different "
                       "stores each)\n" % (a.lmtp_messages, a.lmtp_size))
            out.append("Switchyard gets each message as one transaction (MAIL, RCPT, RCPT, DATA) "
                       "and delivers to both stores; direct Dovecot gets it as one transaction "
                       "per store, both sent at once over a connection per store (what an MTA "
                       "does without a router). A message counts when every recipient is "
                       "answered. CPU per message: per message, not per recipient.\n")
            out.append("| peer | clients | messages | messages/s | runs (messages/s) | vs direct | "
                       "message p50 ms | message p99 ms | recipients delivered | proxy CPU "
                       "ms/message | store CPU ms/message | errors | machine busy | others' CPU |")
            out.append("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for r in rows:
                d = direct.get(r["c"])
                out.append("| %s | %d | %d | %.0f | %s | %s | %.2f | %.2f | %d | %s | %.3f | %d | "
                           "%.0f%% | %.0f%% |" % (
                               r["peer"], r["c"], r["messages"], r["rate"],
                               " ".join("%.0f" % x for x in r["runs"]),
                               "%.2fx" % (r["rate"] / d) if d else "-", r["p50"], r["p99"],
                               r["rcpt_ok"], fmt(r["proxy_ms"], 3), r["store_ms"], r["errors"],
                               r["busy"] * 100, r["others"] * 100))
            out.append("")
        if self.rows["lookups"]:
            out.append("## Lookups through a map with a fixed latency (tests/modules/latencymap), "
                       "[lookup] cache_size = 0, IMAP logins, %gs per run\n" % a.login_secs)
            out.append("Every login asks the map; \"default\" is the [lookup] concurrency the "
                       "daemon ships with (lookups in flight per worker); 1 is one lookup at a "
                       "time per worker, what the serial design did. The ceiling is workers x "
                       "concurrency / latency logins/s.\n")
            out.append("| map latency | [lookup] concurrency | workers | clients | logins/s | "
                       "login p50 ms | login p99 ms | proxy CPU ms/login | errors | machine busy |")
            out.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for r in self.rows["lookups"]:
                out.append("| %d ms | %s | %d | %d | %.0f | %.2f | %.2f | %.3f | %d | %.0f%% |" % (
                    r["ms"], r["threads"], r["workers"], r["c"], r["rate"], r["p50"], r["p99"],
                    r["proxy_ms"], r["errors"], r["busy"] * 100))
            out.append("")
        if self.rows["ldapstop"]:
            out.append("## A SIGSTOPped directory and cached users (ldap map, real slapd, "
                       "%d cached users, workers = %d), %gs per run\n"
                       % (a.ldap_cached, a.scenario_workers, a.login_secs))
            out.append("| slapd | clients (cached users) | logins/s | login p50 ms | login p99 ms "
                       "| proxy CPU ms/login | errors | uncached logins meanwhile (answers) |")
            out.append("|---|---:|---:|---:|---:|---:|---:|---|")
            for r in self.rows["ldapstop"]:
                out.append("| %s | %d | %.0f | %.2f | %.2f | %.3f | %d | %s |" % (
                    r["peer"], r["c"], r["rate"], r["p50"], r["p99"], r["proxy_ms"],
                    r["errors"], r["hung"]))
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
        for key, proto in (("logins", "IMAP"), ("pop3", "POP3")):
            nginx = {r["c"]: r["proxy_ms"] for r in self.rows[key] if r["name"] == "nginx"}
            direct = {r["c"]: r["rate"] for r in self.rows[key] if r["name"] == "direct"}
            for r in self.rows[key]:
                if not r["name"].startswith("switchyard"):
                    continue
                if key == "pop3" and direct.get(r["c"]):
                    checks.append(("%s POP3 c=%d login rate >= 0.9x direct" % (r["peer"], r["c"]),
                                   "%.2fx" % (r["rate"] / direct[r["c"]]),
                                   r["rate"] / direct[r["c"]] >= 0.9))
                if nginx.get(r["c"]) and r["proxy_ms"] is not None:
                    checks.append(("%s %s c=%d CPU per login <= half of nginx's"
                                   % (r["peer"], proto, r["c"]),
                                   "%.3f vs %.3f ms" % (r["proxy_ms"], nginx[r["c"]]),
                                   r["proxy_ms"] <= nginx[r["c"]] / 2))
        nginx_tls = {r["c"]: r["proxy_ms_gb"] for r in self.rows["imaps"] if r["name"] == "nginx"}
        for r in self.rows["imaps"]:
            if r["name"].startswith("switchyard") and nginx_tls.get(r["c"]) and \
                    r["proxy_ms_gb"] is not None:
                checks.append(("%s imaps c=%d CPU per GB <= nginx ssl's" % (r["peer"], r["c"]),
                               "%.0f vs %.0f ms" % (r["proxy_ms_gb"], nginx_tls[r["c"]]),
                               r["proxy_ms_gb"] <= nginx_tls[r["c"]]))
        direct_lmtp = {r["c"]: r["rate"] for r in self.rows["lmtp"] if r["name"] == "direct"}
        for r in self.rows["lmtp"]:
            d = direct_lmtp.get(r["c"])
            if r["name"].startswith("switchyard") and d:
                checks.append(("%s LMTP c=%d messages/s >= 0.9x direct" % (r["peer"], r["c"]),
                               "%.2fx" % (r["rate"] / d), r["rate"] / d >= 0.9))
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


def build_loadgen():
    """make bench/imap-load (rebuilt when imap-load.cc changed); with a build tree apart
    from the source tree (make distcheck) into $abs_top_builddir/bench instead ("make
    clean" removes it there). Returns its path."""
    if os.path.realpath(harness.build_dir()) == os.path.realpath(TOP):
        out_dir, extra = BENCH, []
    else:
        out_dir = os.path.join(harness.build_dir(), "bench")
        os.makedirs(out_dir, exist_ok=True)
        # vpath for the source only: with VPATH, make would take a bench/imap-load in the
        # source tree for the target.
        extra = ["-f", os.path.join(BENCH, "Makefile"), "--eval=vpath %.cc " + BENCH]
    r = subprocess.run(["make", "-s", "-C", out_dir] + extra, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit("building imap-load failed (needs g++ and libssl-dev):\n" + r.stdout)
    return os.path.join(out_dir, "imap-load")


def int_list(text):
    return [int(x) for x in text.split(",") if x.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="short runs (whole benchmark a few minutes)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny counts, every peer and mode once, no waiting for a quiet "
                         "machine, one set of stores: checks that the harness works (< 60 s); "
                         "its figures mean nothing")
    ap.add_argument("--peers", help="comma list from %s (quick: all but nginx-buf64k)"
                    % ",".join(ALL_PEERS))
    ap.add_argument("--modes", default=",".join(ALL_MODES),
                    help="comma list from %s" % ",".join(ALL_MODES))
    ap.add_argument("--login-secs", type=float, help="seconds per login run (10; quick 3)")
    ap.add_argument("--login-concurrency", type=int_list,
                    help="client counts for IMAP logins (full 1,16,64; quick 16)")
    ap.add_argument("--pop3-concurrency", type=int_list,
                    help="client counts for POP3 logins (full 1,16,64; quick 16)")
    ap.add_argument("--imaps-concurrency", type=int_list,
                    help="client counts for imaps bulk (full 4; quick 2)")
    ap.add_argument("--lmtp-messages", type=int, help="messages per LMTP run (full 5000, "
                    "quick 1000)")
    ap.add_argument("--lmtp-concurrency", type=int_list, help="LMTP clients (4; smoke 2)")
    ap.add_argument("--lmtp-size", type=int, default=2000, help="bytes per LMTP message")
    ap.add_argument("--lmtp-max-secs", type=float, default=120,
                    help="longest LMTP run (fewer messages then)")
    ap.add_argument("--lookup-latencies", type=int_list, default=[1, 20],
                    help="latencymap delays in ms for the lookups mode")
    ap.add_argument("--lookup-threads", type=int_list, default=[0, 1],
                    help="[lookup] concurrency values for the lookups mode (0: the default)")
    ap.add_argument("--lookup-clients", type=int, default=64,
                    help="clients of the lookups mode")
    ap.add_argument("--scenario-workers", type=int, default=2,
                    help="Switchyard workers in the lookups and ldapstop modes")
    ap.add_argument("--ldap-cached", type=int, help="cached users in ldapstop (64; smoke 16)")
    ap.add_argument("--ldap-hung", type=int, help="uncached logins left waiting on the "
                    "stopped slapd (8; smoke 4)")
    ap.add_argument("--ldap-clients", type=int, help="clients logging in cached users "
                    "(16; smoke 8)")
    ap.add_argument("--slapd-debug", default="0", help="slapd -d level (0: no debug output; "
                    "'stats' logs every operation)")
    ap.add_argument("--shared-stores", action="store_true",
                    help="one set of stores for all peers (default: fresh stores per peer; "
                         "smoke: shared)")
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
    ap.add_argument("--users", type=int, help="users in the stores and maps (200; smoke 64)")
    ap.add_argument("--step-timeout", type=float, default=10, help="per-step client timeout")
    ap.add_argument("--sy-log-level", default="info",
                    help="Switchyard [log] level (info, the deployed default, logs one line "
                         "per login; notice does not)")
    ap.add_argument("--nginx-workers", type=int, default=2)
    ap.add_argument("--nginx-proxy-buffer", help="nginx mail proxy_buffer (default: nginx's "
                    "own, one page); e.g. 64k")
    ap.add_argument("--loadgen", help="the imap-load binary (default: make -C bench)")
    ap.add_argument("--switchyard", default=harness.switchyard_binary(),
                    help="switchyard binary")
    ap.add_argument("--output", help="report file (default bench/RESULTS.md; with --quick "
                    "bench/RESULTS-quick.md, so a quick run does not replace the full report)")
    ap.add_argument("--replace-output", action="store_true",
                    help="overwrite the report file (default: a full run appends a section to "
                         "bench/RESULTS.md; other outputs are overwritten)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--serve", metavar="PEER",
                    help="only start the stores and PEER, print their ports, and wait "
                         "(for manual runs of imap-load); bounded by --serve-secs")
    ap.add_argument("--serve-secs", type=int, default=600)
    args = ap.parse_args()
    sm = args.smoke
    q = args.quick or sm

    def pick(value, full, quick, smoke=None):
        if value is not None:
            return value
        if sm:
            return quick if smoke is None else smoke
        return quick if q else full

    args.users = pick(args.users, 200, 200, 64)
    args.login_secs = pick(args.login_secs, 10, 3, 0.5)
    args.login_concurrency = pick(args.login_concurrency, [1, 16, 64], [16], [4])
    args.pop3_concurrency = pick(args.pop3_concurrency, [1, 16, 64], [16], [4])
    args.bulk_secs = pick(args.bulk_secs, 10, 3, 0.5)
    args.bulk_concurrency = pick(args.bulk_concurrency, [1, 4], [2], [2])
    args.imaps_concurrency = pick(args.imaps_concurrency, [4], [2], [2])
    args.idle_sessions = pick(args.idle_sessions, 10000, 1000, 20)
    args.lmtp_messages = pick(args.lmtp_messages, 5000, 1000, 40)
    args.lmtp_concurrency = pick(args.lmtp_concurrency, [4], [4], [2])
    args.ldap_cached = pick(args.ldap_cached, 64, 64, 16)
    args.ldap_hung = pick(args.ldap_hung, 8, 8, 4)
    args.ldap_clients = pick(args.ldap_clients, 16, 16, 8)
    args.repeat = pick(args.repeat, 3, 1)
    args.output = args.output or os.path.join(
        BENCH, "RESULTS-smoke.md" if sm else "RESULTS-quick.md" if q else "RESULTS.md")
    args.retries = pick(args.retries, 3, 0)
    args.wait_budget = pick(args.wait_budget, 3600, 15, 0)
    args.quiet_wait = pick(args.quiet_wait, 120, 10, 0)
    if sm:
        args.shared_stores = True
        if args.bulk_mb == 10:
            args.bulk_mb = 1
        args.warmup_secs = min(args.warmup_secs, 0.3)
        args.idle_ramp = min(args.idle_ramp, 20)
        args.idle_max_secs = min(args.idle_max_secs, 30)
        args.lmtp_max_secs = min(args.lmtp_max_secs, 20)
    args.peers = [p for p in (args.peers or ",".join(
        ["direct", "switchyard-w2", "nginx", "perdition"] if sm else
        [p for p in ALL_PEERS if not (q and p == "nginx-buf64k")])).split(",") if p]
    args.modes = [m for m in args.modes.split(",") if m]
    for p in args.peers:
        if p not in ALL_PEERS and not re.match(r"^(switchyard-w\d+|nginx-buf\d+k)$", p):
            ap.error("unknown peer %s" % p)
    for m in args.modes:
        if m not in ALL_MODES:
            ap.error("unknown mode %s" % m)
    if args.users < max(args.bulk_concurrency + args.imaps_concurrency):
        ap.error("--users must be >= the largest bulk concurrency")

    global LOADGEN
    LOADGEN = args.loadgen or build_loadgen()
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
        # RESULTS.md keeps every run: a new section is appended (older ones stay as they are).
        append = os.path.abspath(args.output) == os.path.join(BENCH, "RESULTS.md") \
            and not args.replace_output and os.path.exists(args.output)
        with open(args.output, "a" if append else "w") as f:
            f.write(("\n\n" if append else "") + text)
        log("%s %s" % ("appended to" if append else "wrote", args.output))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
