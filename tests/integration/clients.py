"""Helpers for driving real third-party mail clients in the integration tests.

Test messages, mailboxes read back and compared by Message-ID and content hash, bounded
runs of a client (on a pipe or on a pseudo-terminal, for mutt), the clients' configuration
files, and HAProxy as a PROXY v2 load balancer.

Everything a client writes (its configuration, state, mail) lives in a directory of the
test's own; HOME points there so that nothing under the real home directory is read.
"""

import base64
import collections
import email.utils
import fcntl
import hashlib
import os
import pty
import pwd
import random
import re
import select
import shutil
import signal
import struct
import subprocess
import termios
import time

import harness

# ---------------------------------------------------------------------------
# Test messages.

DOMAIN = "example.test"
# Sizes (bytes of body, roughly) that a mailbox of test messages cycles through.
SIZES = (120, 700, 2500, 9000, 40000, 0, 300, 150000, 5000, 64000)
# Arrival dates of the seeded messages: one day apart, far from "now".
BASE_TIME = 1600000000


def _body_lines(rng, size, index):
    """Text lines of about `size` bytes, with the lines that POP3 and LMTP must dot-stuff."""
    lines = ["Message %d of the client matrix." % index,
             ".a line that starts with a dot",
             "..two dots",
             "."
             " <- a line that is a dot and a space",
             ""]
    words = ("mail", "proxy", "store", "client", "relay", "switch", "yard", "fetch",
             "sync", "maildir", "pipeline", "literal", "octet", "header", "envelope")
    total = sum(len(l) + 2 for l in lines)
    while total < size:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(1, 14)))
        if rng.random() < 0.05:
            line = "." + line
        lines.append(line)
        total += len(line) + 2
    return lines


def make_message(index, rng, size, to="user@" + DOMAIN, prefix="matrix"):
    """One RFC 5322 message (CRLF line ends) with a unique Message-ID."""
    headers = [
        "From: Sender %d <sender%d@%s>" % (index, index % 3, DOMAIN),
        "To: %s" % to,
        "Subject: client matrix message %d (%d bytes)" % (index, size),
        "Date: %s" % time.strftime("%a, %d %b %Y %H:%M:%S +0000",
                                     time.gmtime(BASE_TIME + index * 86400)),
        "Message-ID: <%s-%d.%d@%s>" % (prefix, index, size, DOMAIN),
        "MIME-Version: 1.0",
    ]
    if index % 4 == 3:
        # A multipart message with a binary attachment in base64 (lines of 76).
        boundary = "=-=boundary-%d=-=" % index
        blob = bytes(rng.getrandbits(8) for _ in range(max(64, size // 2)))
        encoded = base64.encodebytes(blob).decode("ascii").splitlines()
        headers.append('Content-Type: multipart/mixed; boundary="%s"' % boundary)
        body = (["This is a MIME message.", "", "--" + boundary,
                 "Content-Type: text/plain; charset=utf-8",
                 "Content-Transfer-Encoding: 8bit", "",
                 "8-bit text: gr\u00fc\u00dfe, \u00e9t\u00e9, \u65e5\u672c.", "",
                 "--" + boundary,
                 "Content-Type: application/octet-stream; name=\"blob%d.bin\"" % index,
                 "Content-Transfer-Encoding: base64",
                 "Content-Disposition: attachment; filename=\"blob%d.bin\"" % index, ""]
                + encoded + ["--" + boundary + "--", ""])
    else:
        headers.append("Content-Type: text/plain; charset=us-ascii")
        body = _body_lines(rng, size, index)
    text = "\r\n".join(headers) + "\r\n\r\n" + "\r\n".join(body) + "\r\n"
    return text.encode("utf-8")


def make_messages(count, seed=9, first=0, to="user@" + DOMAIN, prefix="matrix"):
    rng = random.Random(seed)
    return [make_message(first + i, rng, SIZES[(first + i) % len(SIZES)], to, prefix)
            for i in range(count)]


def arrival_time(raw):
    """The arrival date given to a seeded message: the time of its Date field."""
    m = re.search(rb"^Date: (.*?)\r?$", raw, re.M)
    return int(email.utils.parsedate_to_datetime(m.group(1).decode()).timestamp())


def message_id(raw):
    m = re.search(rb"^Message-ID:\s*<([^>]+)>", raw, re.M | re.I)
    return m.group(1).decode("ascii", "replace") if m else None


# Header fields that clients or the delivering server add on their way: they are left out
# of the content hash (the rest of the message, headers in order and body, must be exact).
ADDED_FIELDS = {b"received", b"status", b"x-status", b"x-keywords", b"x-uid", b"x-tuid",
                b"content-length", b"lines", b"delivered-to", b"return-path",
                b"x-original-to", b"x-fetchmail-warning"}


def split_fields(raw):
    """(list of (lowercased name, whole field bytes), body) of a message with LF line ends."""
    raw = raw.replace(b"\r\n", b"\n")
    head, sep, body = raw.partition(b"\n\n")
    fields = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, text = fields[-1]
            fields[-1] = (name, text + b"\n" + line)
        else:
            fields.append((line.split(b":", 1)[0].strip().lower(), line))
    return fields, body


def content_hash(raw):
    """SHA-256 of the message without the fields in ADDED_FIELDS, with LF line ends."""
    fields, body = split_fields(raw)
    kept = b"\n".join(text for name, text in fields if name not in ADDED_FIELDS)
    return hashlib.sha256(kept + b"\n\n" + body).hexdigest()[:16]


def field_values(raw, name):
    name = name.lower().encode()
    return [text.split(b":", 1)[1].strip().decode("utf-8", "replace")
            for n, text in split_fields(raw)[0] if n == name]


def summary(messages):
    """A multiset of (Message-ID, content hash) for a list of raw messages."""
    return collections.Counter((message_id(m), content_hash(m)) for m in messages)


def describe_difference(expected, got):
    """Text that names what is missing, extra or different between two summaries."""
    missing = expected - got
    extra = got - expected
    lines = []
    for (mid, h), n in sorted(missing.items(), key=str):
        lines.append("  missing %s (hash %s) x%d" % (mid, h, n))
    for (mid, h), n in sorted(extra.items(), key=str):
        lines.append("  extra   %s (hash %s) x%d" % (mid, h, n))
    return "\n".join(lines)


def maildir_files(path):
    """Paths of the messages of a Maildir (new/ and cur/)."""
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(path, sub)
        if os.path.isdir(d):
            out.extend(os.path.join(d, n) for n in sorted(os.listdir(d)))
    return out


def read_files(paths):
    out = []
    for p in paths:
        with open(p, "rb") as f:
            out.append(f.read())
    return out


def read_maildir(path):
    return read_files(maildir_files(path))


def make_maildir(path):
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    return path


def read_directory(path):
    """Every regular file of a directory (one message each), in name order."""
    if not os.path.isdir(path):
        return []
    return read_files(os.path.join(path, n) for n in sorted(os.listdir(path))
                      if os.path.isfile(os.path.join(path, n)))


# ---------------------------------------------------------------------------
# Running a client, always bounded.

class Run:
    """What a bounded client run did: exit status (None on timeout), output, seconds."""

    def __init__(self, argv, returncode, output, elapsed, timed_out):
        self.argv = argv
        self.returncode = returncode
        self.output = output
        self.elapsed = elapsed
        self.timed_out = timed_out

    @property
    def ok(self):
        return self.returncode == 0 and not self.timed_out

    def describe(self, limit=3000):
        state = ("TIMED OUT after %.1fs" % self.elapsed if self.timed_out
                 else "exit %s after %.1fs" % (self.returncode, self.elapsed))
        out = self.output.decode("utf-8", "replace")
        if limit and len(out) > limit:
            out = "[...]" + out[-limit:]
        return "%s: %s\n--- output ---\n%s" % (" ".join(self.argv), state, out)

    def __str__(self):
        return self.describe()


def _kill_group(process):
    """SIGKILL the process group of a child started with start_new_session (its own PID)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _keep_output(result, env):
    """Append a run's account to HOME/client.log (kept with SWITCHYARD_KEEP_TMP=1)."""
    if env and env.get("HOME"):
        with open(os.path.join(env["HOME"], "client.log"), "a", errors="replace") as f:
            f.write(result.describe(limit=0) + "\n")
    return result


def run(argv, timeout, env=None, cwd=None, stdin_data=None):
    """Run a client with its stdout and stderr merged; on timeout kill its process group."""
    t0 = time.monotonic()
    process = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin_data is not None
                               else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                               cwd=cwd, start_new_session=True)
    try:
        out, _ = process.communicate(stdin_data, timeout=timeout)
        return _keep_output(Run(argv, process.returncode, out, time.monotonic() - t0, False),
                            env)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        out, _ = process.communicate(timeout=10)
        return _keep_output(Run(argv, None, out or b"", time.monotonic() - t0, True), env)
    finally:
        if process.poll() is None:
            _kill_group(process)
            process.wait(timeout=10)


def run_on_pty(argv, timeout, env=None, cwd=None, rows=40, cols=120):
    """Run a full-screen client (mutt) on a pseudo-terminal of its own; bounded like run().

    The output is the terminal's byte stream (escape sequences included).
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    t0 = time.monotonic()
    deadline = t0 + timeout
    # A session of its own (killed as a group on timeout); curses needs only fds 0-2 to
    # be the terminal, not a controlling terminal.
    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                               cwd=cwd, start_new_session=True)
    os.close(slave)
    output = bytearray()
    timed_out = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([master], [], [], min(remaining, 0.5))
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every slave end is closed, the client is gone
                    chunk = b""
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        if timed_out:
            _kill_group(process)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            _kill_group(process)
            process.wait(timeout=10)
        os.close(master)
    return _keep_output(Run(argv, None if timed_out else process.returncode, bytes(output),
                            time.monotonic() - t0, timed_out), env)


def require_programs(*names):
    """Fail loudly (never skip) when a client is not installed."""
    missing = [n for n in names if not shutil.which(n)]
    if missing:
        raise AssertionError("not installed: %s (Debian: scripts/deps, or apt-get install "
                             "isync offlineimap3 fetchmail mpop mutt swaks haproxy)"
                             % " ".join(missing))


def client_env(home):
    """An environment whose HOME (and everything derived from it) is `home`."""
    os.makedirs(home, exist_ok=True)
    try:
        me = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        me = str(os.getuid())
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "USER": me,
            "LOGNAME": me, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC",
            "TMPDIR": home, "TERM": "vt100", "XDG_CONFIG_HOME": os.path.join(home, ".config"),
            "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
            "XDG_CACHE_HOME": os.path.join(home, ".cache")}


def write_private(path, text):
    """A file only its owner may read (fetchmail and mpop refuse anything looser)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


# ---------------------------------------------------------------------------
# Client configurations.  `tls` is one of "none", "starttls", "implicit".

def mbsyncrc(home, host, port, user, password, tls, ca, maildir, copy_arrival_date=True,
             timeout=10):
    ssl_type = {"none": "None", "starttls": "STARTTLS", "implicit": "IMAPS"}[tls]
    lines = ["IMAPAccount far",
             "Host %s" % host,
             "Port %d" % port,
             "User %s" % user,
             "Pass %s" % password,
             "SSLType %s" % ssl_type,
             "AuthMechs LOGIN",
             "Timeout %d" % timeout]
    if tls != "none":
        lines += ["CertificateFile %s" % ca, "SystemCertificates no"]
    lines += ["", "IMAPStore far", "Account far", "",
              "MaildirStore near", "Path %s/" % os.path.dirname(maildir),
              "Inbox %s" % maildir, "", "Channel matrix", "Far :far:", "Near :near:",
              "Patterns INBOX", "Sync All", "Create Near", "Expunge None",
              "SyncState %s/" % os.path.join(home, "mbsync-state"),
              "CopyArrivalDate %s" % ("yes" if copy_arrival_date else "no"), ""]
    os.makedirs(os.path.join(home, "mbsync-state"), exist_ok=True)
    return write_private(os.path.join(home, ".mbsyncrc"), "\n".join(lines))


def offlineimaprc(home, host, port, user, password, tls, ca, maildir, socktimeout=10):
    lines = ["[general]", "accounts = matrix", "metadata = %s" % os.path.join(home, "oi-meta"),
             "ui = basic", "maxsyncaccounts = 1", "socktimeout = %d" % socktimeout, "",
             "[Account matrix]", "localrepository = near", "remoterepository = far", "",
             "[Repository near]", "type = Maildir",
             "localfolders = %s" % os.path.dirname(maildir), "",
             "[Repository far]", "type = IMAP", "remotehost = %s" % host,
             "remoteport = %d" % port, "remoteuser = %s" % user, "remotepass = %s" % password,
             "folderfilter = lambda f: f == 'INBOX'",
             "nametrans = lambda f: %r" % os.path.basename(maildir),
             "maxconnections = 1", "holdconnectionopen = no", "readonly = True"]
    if tls == "implicit":
        lines += ["ssl = yes", "starttls = no", "sslcacertfile = %s" % ca]
    elif tls == "starttls":
        lines += ["ssl = no", "starttls = yes", "sslcacertfile = %s" % ca]
    else:
        lines += ["ssl = no", "starttls = no"]
    return write_private(os.path.join(home, ".offlineimaprc"), "\n".join(lines) + "\n")


def fetchmailrc(home, host, port, protocol, user, password, tls, ca, mda):
    """fetchmail in keep mode, every message (fetchall), delivered through `mda`."""
    poll = ['poll "%s" with protocol %s service %d' % (host, protocol, port),
            '  authenticate password timeout 10',
            '  user "%s" there with password "%s" is "%s" here'
            % (user, password, client_env(home)["USER"]),
            '  options keep fetchall no rewrite',
            '  mda "%s"' % mda]
    if tls == "implicit":
        poll.append('  ssl sslproto "tls1.2+" sslcertck sslcertfile "%s"' % ca)
    elif tls == "starttls":
        poll.append('  sslproto "tls1.2+" sslcertck sslcertfile "%s"' % ca)
    else:
        poll.append('  sslproto ""')
    text = "set no bouncemail\nset no syslog\n\n" + "\n".join(poll) + "\n"
    return write_private(os.path.join(home, ".fetchmailrc"), text)


def mpoprc(home, host, port, user, password, tls, ca, maildir, source_ip=None):
    lines = ["defaults", "timeout 10", "", "account matrix", "host %s" % host,
             "port %d" % port, "user %s" % user, "password %s" % password,
             "auth user", "keep on", "only_new off",
             "delivery maildir %s" % maildir,
             "uidls_file %s" % os.path.join(home, "mpop-uidls")]
    if tls == "none":
        lines += ["tls off"]
    else:
        lines += ["tls on", "tls_starttls %s" % ("on" if tls == "starttls" else "off"),
                  "tls_trust_file %s" % ca]
    if source_ip:
        lines.append("source_ip %s" % source_ip)
    return write_private(os.path.join(home, ".mpoprc"), "\n".join(lines) + "\n")


def muttrc(home, user, password, ca):
    lines = ['set imap_user = "%s"' % user,
             'set imap_pass = "%s"' % password,
             'set ssl_ca_certificates_file = "%s"' % ca,
             'set certificate_file = "%s"' % os.path.join(home, "mutt-certificates"),
             "set ssl_verify_host = yes",
             "set ssl_starttls = yes",
             "set ssl_force_tls = no",
             "set mbox_type = Maildir",
             "set move = no", "set delete = no", "set mark_old = no",
             "set confirmappend = no", "set confirmcreate = no",
             "set quit = yes", "set beep = no", "set wait_key = no", "set sleep_time = 0",
             "set imap_check_subscribed = no", "set imap_passive = yes",
             "set timeout = 5", "set imap_keepalive = 30", "set mail_check = 60",
             'set header_cache = ""', 'set message_cachedir = ""',
             'set tmpdir = "%s"' % home,
             'set folder = "%s"' % home,
             "set sort = mailbox-order"]
    return write_private(os.path.join(home, ".muttrc"), "\n".join(lines) + "\n")


def mda_command(directory):
    """An MDA for fetchmail (run by /bin/sh): each message to a file of its own."""
    if not re.fullmatch(r"[A-Za-z0-9_./-]+", directory):
        raise ValueError("an MDA directory the shell takes as it is: %r" % directory)
    return "cat > %s/message.$$" % directory


# ---------------------------------------------------------------------------
# HAProxy in front of Switchyard.

def haproxy_binary():
    search = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    found = shutil.which("haproxy", path=search)
    if not found:
        raise AssertionError("haproxy not found (Debian: apt-get install haproxy)")
    return found


class HAProxy:
    """HAProxy in TCP mode: each frontend port to a backend with send-proxy-v2.

    routes: [(listen_port, target_host, target_port)].  Runs in the foreground (-db) as a
    child of ours; stopped by its PID.
    """

    def __init__(self, workdir, routes, source=None):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.conf_path = os.path.join(workdir, "haproxy.cfg")
        self.log_path = os.path.join(workdir, "haproxy.log")
        self.routes = routes
        parts = ["global", "  log stderr format raw local0 info", "  maxconn 100", "",
                 "defaults", "  mode tcp", "  log global", "  option tcplog",
                 "  timeout connect 5s", "  timeout client 60s", "  timeout server 60s", ""]
        for i, (port, host, target) in enumerate(routes):
            parts += ["frontend fe%d" % i, "  bind 127.0.0.1:%d" % port,
                      "  default_backend be%d" % i, "",
                      "backend be%d" % i,
                      "  server switchyard %s:%d send-proxy-v2%s"
                      % (host, target, (" source %s" % source) if source else ""), ""]
        with open(self.conf_path, "w") as f:
            f.write("\n".join(parts))
        self.process = None

    def start(self):
        check = run([haproxy_binary(), "-c", "-f", self.conf_path], 30)
        if not check.ok:
            raise AssertionError("haproxy refuses its configuration:\n%s" % check)
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen([haproxy_binary(), "-db", "-f", self.conf_path],
                                            stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, cwd=self.workdir,
                                            start_new_session=True)
        finally:
            log.close()
        for port, _, _ in self.routes:
            harness.wait_port("127.0.0.1", port, 15.0, self.process, self.log_text)
        return self

    def log_text(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
