"""Integration-test harness: real Dovecot stores and a real Switchyard on loopback.

Every process is started by this module as a direct child, so it is stopped by its own PID
(never by name).  Each instance lives in a temporary directory of its own.  Every wait is a
bounded poll: nothing here sleeps a fixed time to synchronise with a server.

Paths come from the environment that "make check" exports:
  abs_top_builddir  the build tree (default: the source tree this file lives in)
  DOVECOT           the dovecot binary (default: found on PATH, /usr/sbin, /sbin)
  SWITCHYARD_KEEP_TMP=1 keeps the tests' temporary directories (configs, logs, mail)
"""

import atexit
import base64
import os
import grp
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time

POLL_INTERVAL = 0.02

# ---------------------------------------------------------------------------
# Paths.

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_dir():
    return os.environ.get("abs_top_builddir") or SOURCE_ROOT


def switchyard_binary():
    return os.path.join(build_dir(), "switchyard")


def map_dir():
    return os.path.join(build_dir(), "maps", ".libs")


def test_modules_dir():
    return os.path.join(build_dir(), "tests", "modules", ".libs")


def test_module(name):
    """Absolute path of a test map module, e.g. test_module("sleepmap")."""
    return os.path.join(test_modules_dir(), name + ".so")


def require_file(path, what):
    """Fail loudly (never skip) when a build product is missing."""
    if not os.path.exists(path):
        raise AssertionError(
            "%s not found at %s: build the tree first (make, or make check), "
            "or set abs_top_builddir" % (what, path))
    return path


def dovecot_binary():
    explicit = os.environ.get("DOVECOT")
    if explicit:
        return explicit
    search = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/local/sbin"
    found = shutil.which("dovecot", path=search)
    if not found:
        raise AssertionError("dovecot not found (Debian: apt-get install dovecot-imapd "
                             "dovecot-pop3d dovecot-lmtpd)")
    return found


def make_workdir(prefix):
    """A fresh temporary directory that the unprivileged store users can traverse.

    Always under /tmp: a private $TMPDIR may be closed to Dovecot's users, and Dovecot's
    unix sockets need short paths.
    """
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(path, 0o755)
    return path


# ---------------------------------------------------------------------------
# Sanitized builds (./configure --enable-sanitizers; "make check" exports
# SWITCHYARD_SANITIZERS=yes and the *SAN_OPTIONS that make any report abort the process).
# Every process the tests start (daemon, its workers after they drop privileges, tools)
# writes its ASan/LSan/UBSan report to a file in SANITIZER_DIR; Switchyard.stop() fails the
# test when one has appeared, and the run fails if one is left at exit.
# Leak checking is off for them: map modules (ours and Perdition's) are unloaded at exit and
# on reload, and the state libldap, libsasl2 and the like keep until exit is then reported
# with frames that no longer resolve (so no suppression can name it). The unit tests and
# the fuzz runs check for leaks.

SANITIZED = os.environ.get("SWITCHYARD_SANITIZERS") == "yes"
SANITIZER_DIR = None
_SANITIZER_SEEN = []


def _setup_sanitizers():
    global SANITIZER_DIR
    SANITIZER_DIR = tempfile.mkdtemp(prefix="switchyard-sanitizer-", dir="/tmp")
    os.chmod(SANITIZER_DIR, 0o1777)  # workers run as an unprivileged user
    prefix = os.path.join(SANITIZER_DIR, "report")
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        options = [o for o in os.environ.get(var, "").split(":")
                   if o and not o.startswith("log_path=")]
        defaults = {"halt_on_error": "1", "abort_on_error": "1"}
        if var == "UBSAN_OPTIONS":
            defaults["print_stacktrace"] = "1"
        else:
            options = [o for o in options if not o.startswith("detect_leaks=")]
            options.append("detect_leaks=0")
        for key, value in defaults.items():
            if not any(o.startswith(key + "=") for o in options):
                options.append("%s=%s" % (key, value))
        options.append("log_path=" + prefix)
        os.environ[var] = ":".join(options)


if SANITIZED:
    _setup_sanitizers()


def sanitizer_reports():
    """[(path, text)] of the sanitizer reports written since the last check."""
    if SANITIZER_DIR is None:
        return []
    found = []
    for name in sorted(os.listdir(SANITIZER_DIR)):
        path = os.path.join(SANITIZER_DIR, name)
        if path not in _SANITIZER_SEEN:
            found.append((path, _read_text(path)))
    return found


# g++'s UBSan runtime, linked next to ASan's, prints to stderr whatever log_path says: the
# daemon's log (its stderr) is searched too.
_SANITIZER_LOG_RE = re.compile(r"runtime error: |==\d+==ERROR: \w+Sanitizer|SUMMARY: \w+Sanitizer")


def check_sanitizer_reports(what="a process the test started", log_text=None):
    """Fail (AssertionError with the reports) if a sanitizer report has appeared, in
    SANITIZER_DIR or in `log_text` (a process's stderr)."""
    if not SANITIZED:
        return
    found = sanitizer_reports()
    if log_text and _SANITIZER_LOG_RE.search(log_text):
        found.append(("the log of " + what, log_text))
    if not found:
        return
    _SANITIZER_SEEN.extend(path for path, _ in found if path.startswith(SANITIZER_DIR))
    raise AssertionError("sanitizer report(s) from %s:\n%s" % (what, "\n".join(
        "--- %s\n%s" % (path, text[-8000:]) for path, text in found)))


# ---------------------------------------------------------------------------
# Bounded waiting.

def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count):
    """`count` distinct free ports (all held open while choosing, so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(host, port, timeout=10.0, process=None, describe=None):
    """Poll until host:port accepts a TCP connection.

    If `process` (a Popen) exits meanwhile, fail at once.  `describe` is a callable whose
    text is appended to the error (e.g. the server's log).
    """
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError("process %d exited with status %s before %s:%d opened\n%s"
                               % (process.pid, process.returncode, host, port,
                                  describe() if describe else ""))
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as e:
            last_error = e
        if time.monotonic() >= deadline:
            raise TimeoutError("%s:%d did not accept connections within %.1fs (%s)\n%s"
                               % (host, port, timeout, last_error,
                                  describe() if describe else ""))
        time.sleep(POLL_INTERVAL)


def _read_text(source):
    if callable(source):
        return source()
    try:
        with open(source, "r", encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_for_log(source, regex, timeout=10.0, start=0):
    """Poll a log until `regex` matches; return the match.

    `source` is a file path or a callable returning the text.  `start` is an offset into the
    text from which to search (use len(log_text()) taken before an action to see only what
    that action logged).
    """
    pattern = re.compile(regex) if isinstance(regex, str) else regex
    deadline = time.monotonic() + timeout
    while True:
        text = _read_text(source)
        m = pattern.search(text, start)
        if m:
            return m
        if time.monotonic() >= deadline:
            tail = text[start:][-4000:]
            raise AssertionError("log did not match %r within %.1fs; it ends with:\n%s"
                                 % (pattern.pattern, timeout, tail))
        time.sleep(POLL_INTERVAL)


def wait_until(predicate, timeout=10.0, what="condition"):
    """Poll `predicate` until it returns a true value; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("%s not reached within %.1fs" % (what, timeout))
        time.sleep(POLL_INTERVAL)


# ---------------------------------------------------------------------------
# Process bookkeeping: everything started here is stopped at exit, by PID.

_LIVE = set()


def _stop_all():
    for server in list(_LIVE):
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass
    if SANITIZER_DIR is not None:
        left = os.listdir(SANITIZER_DIR)
        if left:
            # Reports nobody checked, or reports a test already failed on: the run fails.
            import sys
            sys.stderr.write("sanitizer reports left in %s: %s\n" % (SANITIZER_DIR, left))
            for path, text in [(p, _read_text(p)) for p in
                               (os.path.join(SANITIZER_DIR, n) for n in sorted(left))]:
                sys.stderr.write("--- %s\n%s\n" % (path, text[-8000:]))
            sys.stderr.flush()
            os._exit(1)
        shutil.rmtree(SANITIZER_DIR, ignore_errors=True)


atexit.register(_stop_all)


def _terminate(process, timeout):
    """SIGTERM a child by PID, wait (bounded), then SIGKILL.  Returns the exit status."""
    if process.poll() is None:
        try:
            process.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    return process.returncode


def children_of(pid, name=None):
    """PIDs whose parent is `pid` (optionally only those whose comm is `name`)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "r") as f:
                stat = f.read()
        except OSError:
            continue
        # "PID (comm) STATE PPID ...": comm may contain spaces and parentheses.
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == pid and (name is None or comm == name):
            found.append(int(entry))
    return found


def workers_of(proxy):
    """The worker PIDs of a running Switchyard (its master's children), sorted."""
    return sorted(children_of(proxy.pid))


# ---------------------------------------------------------------------------
# Dovecot.

def _mail_owner():
    """(uid, gid) that owns mail: an unprivileged user when we are root, else ourselves."""
    if os.geteuid() == 0:
        try:
            nobody = pwd.getpwnam("nobody")
            return nobody.pw_uid, nobody.pw_gid
        except KeyError:
            return 65534, 65534
    return os.getuid(), os.getgid()


class Dovecot:
    """One real Dovecot (IMAP, POP3, LMTP on loopback) in `workdir`, started by start().

    users: {name: password}.  Passwords may contain anything but ':' and line breaks.
    ports: (imap, pop3, lmtp) to use fixed ports; free ones are chosen by default.
    """

    def __init__(self, name, workdir, users=None, extra_conf="", start=True, ports=None,
                 tls=None):
        """tls: (cert_path, key_path) turns on STARTTLS and the imaps/pop3s listeners."""
        self.name = name
        self.tls = tls
        self.imaps_port, self.pop3s_port = free_ports(2) if tls else (0, 0)
        self.workdir = os.path.abspath(workdir)
        self.users = dict(users or {"demo1": "demo"})
        self.extra_conf = extra_conf
        self.uid, self.gid = _mail_owner()
        self.imap_port, self.pop3_port, self.lmtp_port = ports or free_ports(3)
        self.process = None
        self.conf_path = os.path.join(self.workdir, "dovecot.conf")
        self.log_path = os.path.join(self.workdir, "dovecot.log")
        self.stderr_path = os.path.join(self.workdir, "dovecot.stderr")
        self.passwd_path = os.path.join(self.workdir, "users")
        self.mail_root = os.path.join(self.workdir, "mail")
        os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        os.makedirs(self.mail_root, exist_ok=True)
        self._chown(self.mail_root)
        self.write_users()
        for user in self.users:
            self.maildir(user)
        with open(self.conf_path, "w", encoding="utf-8") as f:
            f.write(self.config_text())
        if start:
            self.start()

    # -- configuration ------------------------------------------------------

    def config_text(self):
        root = os.geteuid() == 0
        if root:
            identity = ("default_login_user = dovenull\n"
                        "default_internal_user = dovecot\n")
            chroots = ""
        else:
            me = pwd.getpwuid(os.getuid()).pw_name
            my_group = grp.getgrgid(os.getgid()).gr_name
            identity = ("default_login_user = %s\n"
                        "default_internal_user = %s\n"
                        "default_internal_group = %s\n" % (me, me, my_group))
            # Without root there is no chroot(): the login services must not ask for one.
            chroots = "".join("service %s {\n  chroot =\n}\n" % s
                              for s in ("imap-login", "pop3-login", "submission-login",
                                        "imap-urlauth-login", "anvil", "ipc", "old-stats",
                                        "aggregator", "director"))
        values = {
            "name": self.name,
            "w": self.workdir,
            "imap": self.imap_port,
            "pop3": self.pop3_port,
            "lmtp": self.lmtp_port,
            "uid": self.uid,
            "gid": self.gid,
            "identity": identity,
            "chroots": chroots,
            "extra": self.extra_conf,
            "imaps": self.imaps_port,
            "pop3s": self.pop3s_port,
            "ssl": ("ssl = yes\nssl_cert = <%s\nssl_key = <%s\nssl_min_protocol = TLSv1.2"
                    % self.tls) if self.tls else "ssl = no",
        }
        return """\
# Dovecot store "{name}" written by the Switchyard integration harness.
base_dir = {w}/run
state_dir = {w}/state
instance_name = switchyard-test-{name}-{imap}
log_path = {w}/dovecot.log
protocols = imap pop3 lmtp
listen = 127.0.0.1
{ssl}
{identity}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_verbose = yes
login_trusted_networks = 127.0.0.0/8
login_greeting = Dovecot store {name} ready.
verbose_proctitle = yes
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {w}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={w}/mail/%u
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s}
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@example.invalid
}}
# A proxy sends every login from one address: no penalty after failed logins.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{chroots}
{extra}
""".format(**values)

    def write_users(self):
        lines = []
        for user, password in self.users.items():
            if ":" in password or "\n" in password or ":" in user:
                raise ValueError("passwd-file cannot hold %r/%r" % (user, password))
            # The explicit {PLAIN} keeps a password that itself starts with "{" intact.
            lines.append("%s:{PLAIN}%s::::::\n" % (user, password))
        with open(self.passwd_path, "w", encoding="utf-8") as f:
            f.writelines(lines)
        os.chmod(self.passwd_path, 0o644)

    def add_user(self, user, password):
        """Add a user; Dovecot rereads the passwd-file when it changes."""
        self.users[user] = password
        self.write_users()
        self.maildir(user)

    # -- mail ---------------------------------------------------------------

    def _chown(self, path):
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.gid)

    def maildir(self, user, folder=None):
        """Create (if needed) and return the user's Maildir, or a Maildir++ sub-folder."""
        home = os.path.join(self.mail_root, user)
        base = os.path.join(home, "Maildir")
        path = base if not folder else os.path.join(base, "." + folder)
        for d in (home, base, path) + tuple(os.path.join(path, s) for s in ("cur", "new", "tmp")):
            if not os.path.isdir(d):
                os.makedirs(d, exist_ok=True)
                os.chmod(d, 0o700)
                self._chown(d)
        if folder:
            marker = os.path.join(path, "maildirfolder")
            if not os.path.exists(marker):
                open(marker, "w").close()
                self._chown(marker)
        return path

    _counter = 0

    def add_message(self, user, raw, folder=None):
        """Deliver raw bytes as a new message (tmp/ then rename into new/, as Maildir wants).

        Returns the file's path.  Use CRLF line ends for byte-exact comparisons after FETCH.
        """
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        path = self.maildir(user, folder)
        Dovecot._counter += 1
        name = "%d.P%dQ%d.switchyard-test" % (time.time(), os.getpid(), Dovecot._counter)
        tmp = os.path.join(path, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(raw)
        os.chmod(tmp, 0o600)
        self._chown(tmp)
        final = os.path.join(path, "new", name)
        os.rename(tmp, final)
        return final

    def mailbox_files(self, user, folder=None):
        """Paths of the messages in the user's new/ and cur/ (sorted by name)."""
        path = self.maildir(user, folder)
        files = []
        for sub in ("new", "cur"):
            d = os.path.join(path, sub)
            files.extend(os.path.join(d, n) for n in os.listdir(d))
        return sorted(files)

    # -- process ------------------------------------------------------------

    def log_text(self):
        return _read_text(self.log_path)

    def describe(self):
        return ("--- %s ---\n%s\n--- dovecot stderr ---\n%s\n--- %s ---\n%s"
                % (self.conf_path, _read_text(self.conf_path), _read_text(self.stderr_path),
                   self.log_path, self.log_text()[-6000:]))

    def start(self):
        if self.running():
            return
        stderr = open(self.stderr_path, "ab")
        try:
            self.process = subprocess.Popen(
                [dovecot_binary(), "-F", "-c", self.conf_path],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=subprocess.STDOUT,
                cwd=self.workdir, start_new_session=True)
        finally:
            stderr.close()
        _LIVE.add(self)
        try:
            for port in (self.imap_port, self.pop3_port, self.lmtp_port):
                wait_port("127.0.0.1", port, 15.0, self.process, self.describe)
        except Exception:
            self.stop()
            raise

    def running(self):
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def imap_processes(self):
        """PIDs of this instance's post-login imap processes."""
        return children_of(self.pid, "imap") if self.running() else []

    def stop(self):
        """SIGTERM the master by PID and wait; then SIGKILL what is left of its group.

        Dovecot's master exits within a second, but post-login imap processes may linger
        several seconds more before they say BYE: the group kill ends them with it.
        """
        _LIVE.discard(self)
        if self.process is not None:
            _terminate(self.process, 10.0)
            self._kill_group()

    def crash(self):
        """Simulate a store crash: SIGKILL the master and all its processes at once."""
        _LIVE.discard(self)
        if self.process is not None:
            self._kill_group()
            self.process.wait(timeout=10.0)

    def _kill_group(self):
        # The master leads a session of its own (start_new_session), so its process group
        # id is its PID and holds only this instance's processes.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# ---------------------------------------------------------------------------
# Switchyard.

_ADDRESS_RE = re.compile(r'^\s*address\s*=\s*"([^"]+):(\d+)"', re.M)


class Switchyard:
    """The daemon under test, run in the foreground (-f) with its log in workdir.

    ports: [(host, port)] to wait for (default: every listen address in the config).
    log_to_file=False leaves stdout/stderr to the caller's terminal (the demo does that).
    """

    def __init__(self, binary, workdir, config_text, ports=None, start=True, log_to_file=True,
                 preexec_fn=None):
        """preexec_fn: run in the child before exec (e.g. to lower RLIMIT_NOFILE)."""
        self.preexec_fn = preexec_fn
        self.binary = binary or switchyard_binary()
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.conf_path = os.path.join(self.workdir, "switchyard.conf")
        self.log_path = os.path.join(self.workdir, "switchyard.log")
        with open(self.conf_path, "w", encoding="utf-8") as f:
            f.write(config_text)
        if ports is None:
            ports = [(h.strip("[]"), int(p)) for h, p in _ADDRESS_RE.findall(config_text)]
        self.ports = ports
        self.log_to_file = log_to_file
        self.process = None
        if start:
            self.start()

    @property
    def port(self):
        return self.ports[0][1]

    def log_text(self):
        return _read_text(self.log_path)

    def describe(self):
        return ("--- %s ---\n%s\n--- %s ---\n%s"
                % (self.conf_path, _read_text(self.conf_path), self.log_path,
                   self.log_text()[-6000:]))

    def start(self):
        require_file(self.binary, "the switchyard binary")
        log = open(self.log_path, "ab") if self.log_to_file else None
        try:
            # A session of its own: a terminal's Ctrl-C reaches only whoever started us.
            self.process = subprocess.Popen(
                [self.binary, "-f", "-c", self.conf_path],
                stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT if log else None,
                cwd=self.workdir, start_new_session=True, preexec_fn=self.preexec_fn)
        finally:
            if log:
                log.close()
        _LIVE.add(self)
        try:
            for host, port in self.ports:
                wait_port(host, port, 15.0, self.process, self.describe)
        except Exception:
            self.stop()
            raise

    def running(self):
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def stop(self, timeout=10.0):
        """SIGTERM by PID, bounded wait, SIGKILL if needed.  Returns the exit status."""
        _LIVE.discard(self)
        if self.process is None:
            return None
        status = _terminate(self.process, timeout)
        check_sanitizer_reports("switchyard (%s)" % self.workdir,
                                self.log_text() if self.log_to_file else None)
        return status


def check_config(config_path, binary=None, timeout=30.0):
    """Run `switchyard -t -c FILE`; return the CompletedProcess (text, stdout+stderr)."""
    binary = binary or switchyard_binary()
    require_file(binary, "the switchyard binary")
    return subprocess.run([binary, "-t", "-c", config_path], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout, text=True, errors="replace")


def toml_string(value):
    """A TOML basic string."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7f:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def backend_section(name, port, hosts=("127.0.0.1",), connect_timeout="2s"):
    """A [backend.NAME] table for an IMAP store on `hosts` (tried in order)."""
    host_list = ", ".join(toml_string(h) for h in hosts)
    return ("[backend.%s]\nhost = [%s]\nimap = %d\nconnect_timeout = %s\n\n"
            % (name, host_list, port, toml_string(connect_timeout)))


def map_section(module, options):
    return "[[map]]\nmodule = %s\noptions = %s\n\n" % (toml_string(module), toml_string(options))


def switchyard_config(port, maps, backends, fallback=None, limits=None, username=None,
                      level="debug", workers=0, extra="", extra_top=""):
    """Compose a Switchyard config.

    maps: [(module, options)] in chain order; backends: text of [backend.*] tables (see
    backend_section); limits / username: {key: value} with values already in TOML syntax
    or as Python str/int/bool; extra_top: top-level keys; extra: tables appended at the end.
    """
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        return toml_string(v)

    parts = ["# Written by the Switchyard integration harness.\n",
             "workers = %d\n" % workers,
             "map_dir = %s\n" % toml_string(map_dir()),
             extra_top, "\n",
             "[log]\ntarget = \"stderr\"\nlevel = %s\n\n" % toml_string(level),
             "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:%d\"\n\n" % port]
    for module, options in maps:
        parts.append(map_section(module, options))
    if username:
        parts.append("[username]\n" + "".join("%s = %s\n" % (k, value(v))
                                             for k, v in username.items()) + "\n")
    if fallback:
        parts.append("[lookup]\nfallback = %s\n\n" % toml_string(fallback))
    if limits:
        parts.append("[limits]\n" + "".join("%s = %s\n" % (k, value(v))
                                           for k, v in limits.items()) + "\n")
    parts.append(backends)
    parts.append(extra)
    return "".join(parts)


# ---------------------------------------------------------------------------
# Maps.

def make_ca(directory, name="Switchyard Test CA"):
    """A throw-away CA: returns (ca_cert_path, ca_key_path)."""
    os.makedirs(directory, exist_ok=True)
    cert = os.path.join(directory, "ca.pem")
    key = os.path.join(directory, "ca.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=" + name, "-keyout", key, "-out", cert,
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    os.chmod(key, 0o644)
    return cert, key


def make_cert(directory, name, ca, hosts=("localhost", "127.0.0.1")):
    """A server certificate signed by `ca` for `hosts` (DNS names and IP addresses).

    Returns (cert_path, key_path); readable by the unprivileged users the servers run as.
    """
    os.makedirs(directory, exist_ok=True)
    ca_cert, ca_key = ca
    key = os.path.join(directory, name + ".key")
    csr = os.path.join(directory, name + ".csr")
    cert = os.path.join(directory, name + ".pem")
    ext = os.path.join(directory, name + ".ext")
    sans = ",".join(("IP:" if h.replace(".", "").isdigit() or ":" in h else "DNS:") + h
                    for h in hosts)
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\n" % sans)
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + hosts[0],
                    "-keyout", key, "-out", csr], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
                    "-CAcreateserial", "-days", "2", "-out", cert, "-extfile", ext],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    os.chmod(key, 0o644)
    return cert, key


def make_sqlite_map(path, rows):
    """Create a Perdition-style SQLite map.

    rows: iterables of (user, servername[, port[, store_user]]); missing values are NULL.
    """
    conn = sqlite3.connect(path)
    try:
        conn.execute('CREATE TABLE IF NOT EXISTS tblPerdition ('
                     '"user" TEXT PRIMARY KEY NOT NULL, servername TEXT NOT NULL, '
                     'port TEXT, store_user TEXT)')
        for row in rows:
            row = tuple(row) + (None,) * (4 - len(tuple(row)))
            conn.execute('INSERT INTO tblPerdition ("user", servername, port, store_user) '
                         'VALUES (?, ?, ?, ?)', row[:4])
        conn.commit()
    finally:
        conn.close()
    os.chmod(path, 0o644)
    return path


# ---------------------------------------------------------------------------
# A raw line-oriented client, for what imaplib cannot send (literals, SASL-IR, IDLE).

class LineClient:
    """A blocking TCP client that reads CRLF lines and IMAP literals, with timeouts."""

    def __init__(self, host, port, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.closed = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out; received so far: %r" % self.buf[-500:])
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""   # a reset is a close too (data in flight may be lost with it)
        if not chunk:
            self.closed = True
            raise EOFError("connection closed; unread: %r" % self.buf[-500:])
        self.buf += chunk

    def readline(self, timeout=None):
        """One line including its CRLF."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while b"\n" not in self.buf:
            self._fill(deadline)
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read_exact(self, n, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while len(self.buf) < n:
            self._fill(deadline)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    _LITERAL_AT_END = re.compile(rb"\{(\d+)\+?\}\r\n$")

    def read_response(self, timeout=None):
        """One IMAP response: a line plus any literals it announces, as bytes."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        out = self.readline(max(0.0, deadline - time.monotonic()))
        while True:
            m = self._LITERAL_AT_END.search(out)
            if not m:
                return out
            out += self.read_exact(int(m.group(1)), max(0.0, deadline - time.monotonic()))
            out += self.readline(max(0.0, deadline - time.monotonic()))

    def read_until_tagged(self, tag, timeout=None):
        """Responses until the one tagged `tag`: (untagged list, tagged line)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        if isinstance(tag, str):
            tag = tag.encode()
        untagged = []
        while True:
            resp = self.read_response(max(0.0, deadline - time.monotonic()))
            if resp.startswith(tag + b" "):
                return untagged, resp
            untagged.append(resp)

    def command(self, tag, text, timeout=None):
        """Send `tag text\\r\\n` and read to the tagged reply."""
        if isinstance(text, str):
            text = text.encode("utf-8")
        self.send(tag.encode() + b" " + text + b"\r\n")
        return self.read_until_tagged(tag, timeout)

    def wait_eof(self, timeout=5.0):
        """Everything the peer sends until it closes (bounded by `timeout`).

        On timeout, socket.timeout is raised and the bytes received stay readable.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
            except EOFError:
                received, self.buf = self.buf, b""
                return received


def imap_quote(value):
    """An IMAP quoted string (bytes) for a str or bytes value."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def sasl_plain(user, password, authzid=""):
    """Base64 of the SASL PLAIN message authzid NUL user NUL password."""
    raw = b"\0".join(x.encode("utf-8") for x in (authzid, user, password))
    return base64.b64encode(raw).decode("ascii")
