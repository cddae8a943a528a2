"""A real Postfix instance in a temporary directory, for the LMTP router and socketmap tests.

Postfix(workdir, lmtp_port=...) writes a main.cf and a master.cf of its own into
workdir/etc, keeps its queue in workdir/queue, its data in workdir/data and its log in
workdir/maillog (through the postlogd service: no syslog), and runs Postfix's master(8)
directly, in the foreground, as a child of ours (`master -d -c DIR` in a new session): its
PID is ours, stop() ends it by that PID and then SIGKILLs what is left of its process group
(which holds only this instance's daemons).  `postfix -c DIR check` runs before every start:
it creates the queue directories with the owners Postfix wants (mail_owner postfix,
setgid_group postdrop, both made by the Debian package).

The instance:
  - listens for SMTP on 127.0.0.1:PORT only (inet_interfaces = 127.0.0.1, IPv4 only);
  - has no local domains (mydestination empty), no relayhost and no DNS at all;
  - accepts mail for virtual_mailbox_domains (default example.test) and hands it to
    virtual_transport, by default lmtp:inet:127.0.0.1:LMTP_PORT (any next hop may be given,
    e.g. Switchyard's LMTP router later);
  - takes transport_maps / virtual_mailbox_maps as given (e.g.
    "socketmap:unix:/path:transport"); virtual_mailbox_maps defaults to static:OK (every
    recipient in the domains exists);
  - retries deferred mail fast (queue_run_delay 1s, backoff 1s..5s).
Every daemon runs without chroot (column 5 of master.cf is "n" throughout).

Every wait is a bounded poll.  Postfix's master must run as root.

Needs the Debian package postfix (postfix, postconf, postqueue, postsuper, postmap and the
daemons in /usr/lib/postfix/sbin).  Installing it without configuring or starting a system
instance: `echo "postfix postfix/main_mailer_type select No configuration" |
debconf-set-selections; DEBIAN_FRONTEND=noninteractive apt-get install -y postfix`.
"""

import collections
import json
import os
import re
import shutil
import signal
import smtplib
import subprocess
import time

import harness

HOST = "127.0.0.1"
DEFAULT_DOMAINS = ("example.test",)
COMMAND_TIMEOUT = 30.0


def _find(program):
    search = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/local/sbin"
    found = shutil.which(program, path=search)
    if not found:
        raise AssertionError(
            "%s not found (Debian: echo 'postfix postfix/main_mailer_type select No "
            "configuration' | debconf-set-selections; apt-get install postfix)" % program)
    return found


def lmtp_nexthop(port, host=HOST):
    """The transport:nexthop for an LMTP server on host:port."""
    return "lmtp:inet:%s:%d" % (host, port)


def _daemon_directory(config_dir):
    out = subprocess.run([_find("postconf"), "-c", config_dir, "-h", "daemon_directory"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=COMMAND_TIMEOUT)
    if out.returncode != 0:
        raise RuntimeError("postconf -h daemon_directory failed: %s" % out.stderr)
    return out.stdout.strip()


# Status lines of the delivery agents, e.g.
#   postfix/lmtp[42]: 4Xy1Zz: to=<a@example.test>, relay=127.0.0.1[127.0.0.1]:2424,
#   delay=0.1, delays=0.01/0/0.05/0.04, dsn=2.0.0, status=sent (250 2.0.0 <a@...> Saved)
# (an orig_to=<...> may follow to=<...>).
_STATUS_RE = re.compile(
    r"^(?P<prefix>.*?)\b(?P<service>[\w./-]+)\[(?P<pid>\d+)\]: (?P<queue_id>[0-9A-Za-z]+): "
    r"to=<(?P<recipient>[^>]*)>,(?P<fields>.*?) dsn=(?P<dsn>\d\.\d{1,3}\.\d{1,3}), "
    r"status=(?P<status>\w+) \((?P<reason>.*)\)$", re.M)

Delivery = collections.namedtuple(
    "Delivery", "queue_id recipient status dsn reason relay service line")


class SendResult(collections.namedtuple("SendResult", "code text queue_id rcpt")):
    """The outcome of one SMTP transaction.

    code, text: the reply to DATA, or to the step that failed (MAIL, or RCPT when every
    recipient was refused); queue_id: Postfix's queue id when queued (from "queued as ...");
    rcpt: {recipient: (code, text)} for every RCPT TO sent.
    """

    @property
    def ok(self):
        return self.code == 250 and self.queue_id is not None


class PostmapResult(collections.namedtuple("PostmapResult", "code output")):
    """(exit code, stdout without the final newline); .errors holds stderr.

    postmap -q exits 0 when the key was found, 1 when it was not, and 1 too on a fatal
    error (then .errors says why).
    """
    errors = ""


class Postfix:
    """One Postfix instance in `workdir`.

    lmtp_port / lmtp_host: the LMTP next hop for the virtual domains (virtual_transport);
    virtual_transport overrides it with any transport:nexthop.  domains: the
    virtual_mailbox_domains.  transport_maps, virtual_mailbox_maps: map specs (a string).
    main: {parameter: value} added to (and overriding) main.cf.  master_extra: lines
    appended to master.cf.  port: the SMTP port (a free one by default).
    """

    def __init__(self, workdir, lmtp_port=None, lmtp_host=HOST, virtual_transport=None,
                 domains=DEFAULT_DOMAINS, transport_maps="", virtual_mailbox_maps="static:OK",
                 main=None, master_extra="", port=None, start=True):
        if os.geteuid() != 0:
            raise AssertionError("Postfix's master(8) must be started as root")
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, 0o755)   # the postfix user must reach its queue
        self.port = port or harness.free_port()
        self.config_dir = os.path.join(self.workdir, "etc")
        self.queue_dir = os.path.join(self.workdir, "queue")
        self.data_dir = os.path.join(self.workdir, "data")
        self.maillog_path = os.path.join(self.workdir, "maillog")
        self.stderr_path = os.path.join(self.workdir, "master.stderr")
        self.process = None
        if virtual_transport is None:
            if lmtp_port is None:
                raise ValueError("give lmtp_port or virtual_transport")
            virtual_transport = lmtp_nexthop(lmtp_port, lmtp_host)
        self.params = self._base_params()
        self.params.update({
            "virtual_mailbox_domains": ", ".join(domains) if not isinstance(domains, str)
                                       else domains,
            "virtual_mailbox_maps": virtual_mailbox_maps,
            "virtual_transport": virtual_transport,
            "transport_maps": transport_maps,
        })
        self.params.update(main or {})
        self.master_extra = master_extra
        # Root's, like /var/spool/postfix: `postfix check` creates what is inside.
        for d in (self.config_dir, self.queue_dir):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        self.write_config()
        if start:
            self.start()

    # -- configuration --------------------------------------------------------

    def _base_params(self):
        w = self.workdir
        return collections.OrderedDict([
            ("compatibility_level", "3.6"),
            ("queue_directory", self.queue_dir),
            ("data_directory", self.data_dir),
            ("mail_owner", "postfix"),
            ("setgid_group", "postdrop"),
            ("myhostname", "switchyard-test.localdomain"),
            ("mydomain", "localdomain"),
            ("myorigin", "$myhostname"),
            ("mydestination", ""),
            ("relayhost", ""),
            ("inet_interfaces", HOST),
            ("inet_protocols", "ipv4"),
            ("mynetworks", "127.0.0.0/8"),
            ("smtpd_banner", "$myhostname ESMTP Postfix (Switchyard test)"),
            ("smtpd_peername_lookup", "no"),
            # No DNS anywhere: numeric next hops only, names from /etc/hosts.
            ("smtp_dns_support_level", "disabled"),
            ("lmtp_dns_support_level", "disabled"),
            ("smtp_host_lookup", "native"),
            ("lmtp_host_lookup", "native"),
            # Logging to a file through postlogd, not to syslog.
            ("maillog_file", self.maillog_path),
            ("maillog_file_prefixes", w),
            # Retry deferred mail fast.
            ("queue_run_delay", "1s"),
            ("minimal_backoff_time", "1s"),
            ("maximal_backoff_time", "5s"),
            ("alias_maps", ""),
            ("alias_database", ""),
            ("local_recipient_maps", ""),
            ("biff", "no"),
            ("append_dot_mydomain", "no"),
            ("readme_directory", "no"),
        ])

    def main_cf_text(self):
        lines = ["# Written by the Switchyard integration harness (tests/integration/postfix.py)."]
        for name, value in self.params.items():
            if "\n" in str(value):
                raise ValueError("a main.cf value cannot hold a line break: %s" % name)
            lines.append("%s = %s" % (name, value))
        return "\n".join(lines) + "\n"

    def master_cf_text(self):
        # Every service without chroot: a chroot would need copies of /etc files in the
        # queue directory.  Columns: service type private unpriv chroot wakeup maxproc command.
        return """\
# Written by the Switchyard integration harness (tests/integration/postfix.py).
{host}:{port} inet n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
{extra}""".format(host=HOST, port=self.port, extra=self.master_extra)

    def write_config(self):
        for name, text in (("main.cf", self.main_cf_text()), ("master.cf", self.master_cf_text())):
            path = os.path.join(self.config_dir, name)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(path, 0o644)

    def set_params(self, reload=True, **params):
        """Change main.cf parameters (e.g. transport_maps=...); reload a running instance."""
        self.params.update(params)
        self.write_config()
        if reload and self.running():
            self.reload()

    def postconf(self, name):
        """The value of one parameter as this instance sees it (postconf -h)."""
        out = self._run([_find("postconf"), "-c", self.config_dir, "-h", name])
        return out.stdout.rstrip("\n")

    # -- commands -------------------------------------------------------------

    def _run(self, argv, check=True, timeout=COMMAND_TIMEOUT):
        out = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, errors="replace",
                             timeout=timeout, cwd=self.workdir)
        if check and out.returncode != 0:
            raise RuntimeError("%s exited with %d\n--- stdout ---\n%s\n--- stderr ---\n%s\n%s"
                               % (" ".join(argv), out.returncode, out.stdout, out.stderr,
                                  self.describe()))
        return out

    def check(self):
        """`postfix -c DIR check`: validates the configuration and creates the missing
        queue/data directories with Postfix's owners and modes.  Returns its output."""
        out = self._run([_find("postfix"), "-c", self.config_dir, "check"])
        return out.stdout + out.stderr

    def reload(self):
        """`postfix -c DIR reload` (SIGHUP to our master): rereads main.cf and master.cf."""
        self._run([_find("postfix"), "-c", self.config_dir, "reload"])

    def flush(self):
        """`postqueue -f`: retry every queued message now (deferred ones included)."""
        self._run([_find("postqueue"), "-c", self.config_dir, "-f"])

    def queue(self):
        """The queue as `postqueue -j` lists it: one dict per message (queue_name,
        queue_id, sender, recipients [{address, delay_reason?}], ...)."""
        out = self._run([_find("postqueue"), "-c", self.config_dir, "-j"])
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    def queue_ids(self):
        return [m["queue_id"] for m in self.queue()]

    def queue_size(self):
        return len(self.queue())

    def wait_queue_empty(self, timeout=30.0):
        """Poll until the queue is empty (every message delivered, bounced or deleted)."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.queue()
            if not left:
                return
            if time.monotonic() >= deadline:
                raise AssertionError("the Postfix queue still holds %d message(s) after %.1fs:"
                                     "\n%s\n--- maillog ---\n%s"
                                     % (len(left), timeout, json.dumps(left, indent=1)[:4000],
                                        self.log_text()[-4000:]))
            time.sleep(harness.POLL_INTERVAL * 5)

    def wait_queue_size(self, size, timeout=30.0):
        """Poll until the queue holds exactly `size` messages; return the queue."""
        last = []

        def reached():
            last[:] = self.queue()
            return len(last) == size
        try:
            harness.wait_until(reached, timeout, "a queue of %d message(s)" % size)
        except AssertionError as e:
            raise AssertionError("%s (it holds %d)\n--- maillog ---\n%s"
                                 % (e, len(last), self.log_text()[-4000:])) from None
        return list(last)

    def delete_queue(self):
        """`postsuper -d ALL`: drop every queued message (to isolate tests)."""
        self._run([_find("postsuper"), "-c", self.config_dir, "-d", "ALL"])

    def postmap_query(self, key, map_spec):
        """`postmap -c DIR -q KEY MAP_SPEC` -> PostmapResult(code, output), .errors = stderr."""
        out = self._run([_find("postmap"), "-c", self.config_dir, "-q", key, map_spec],
                        check=False)
        result = PostmapResult(out.returncode, out.stdout.rstrip("\n"))
        result.errors = out.stderr
        return result

    def postmap(self, map_spec):
        """`postmap -c DIR MAP_SPEC`: build an indexed map (hash:, btree:, ...) from its
        source file."""
        self._run([_find("postmap"), "-c", self.config_dir, map_spec])

    # -- SMTP -----------------------------------------------------------------

    def send(self, sender, recipients, message, timeout=30.0):
        """Submit `message` (bytes, CRLF line ends) over SMTP to this instance.

        Returns a SendResult; refused recipients do not raise (see SendResult.rcpt).
        """
        if isinstance(recipients, str):
            recipients = [recipients]
        if isinstance(message, str):
            message = message.encode("utf-8")
        with smtplib.SMTP(HOST, self.port, local_hostname="client.example.test",
                          timeout=timeout) as smtp:
            code, text = smtp.ehlo()
            if code != 250:
                return SendResult(code, text.decode("utf-8", "replace"), None, {})
            code, text = smtp.mail(sender)
            if code != 250:
                return SendResult(code, text.decode("utf-8", "replace"), None, {})
            rcpt = {}
            for r in recipients:
                c, t = smtp.rcpt(r)
                rcpt[r] = (c, t.decode("utf-8", "replace"))
            accepted = [r for r in recipients if rcpt[r][0] in (250, 251)]
            if not accepted:
                smtp.rset()
                c, t = rcpt[recipients[-1]] if recipients else (503, "no recipients")
                return SendResult(c, t, None, rcpt)
            code, text = smtp.data(message)
            text = text.decode("utf-8", "replace")
            m = re.search(r"queued as ([0-9A-Za-z]+)", text)
            return SendResult(code, text, m.group(1) if m else None, rcpt)

    # -- the log --------------------------------------------------------------

    def log_text(self):
        return harness._read_text(self.maillog_path)

    def deliveries(self, recipient=None, status=None, start=0):
        """Delivery status lines of the maillog (from offset `start`) as Delivery tuples."""
        found = []
        for m in _STATUS_RE.finditer(self.log_text(), start):
            if recipient is not None and m.group("recipient").lower() != recipient.lower():
                continue
            if status is not None and m.group("status") != status:
                continue
            relay = re.search(r"\brelay=([^,]*)", m.group("fields"))
            found.append(Delivery(m.group("queue_id"), m.group("recipient"), m.group("status"),
                                  m.group("dsn"), m.group("reason"),
                                  relay.group(1) if relay else None, m.group("service"),
                                  m.group(0)))
        return found

    def wait_status(self, recipient, status="sent", dsn=None, queue_id=None, timeout=30.0,
                    start=0):
        """Poll the maillog until a delivery line for `recipient` shows `status` (sent,
        deferred, bounced, expired...) and, when given, the dsn (a regex, e.g. r"4\\.\\d+\\.\\d+")
        and the queue id.  Returns the re.Match (groups queue_id, recipient, dsn, status,
        reason, service)."""
        regex = (r"(?m)\b[\w./-]+\[\d+\]: (?P<queue_id>%s): to=<(?P<recipient>%s)>,.*? "
                 r"dsn=(?P<dsn>%s), status=(?P<status>%s) \((?P<reason>.*)\)$"
                 % (re.escape(queue_id) if queue_id else r"[0-9A-Za-z]+",
                    re.escape(recipient), dsn or r"\d\.\d{1,3}\.\d{1,3}", re.escape(status)))
        return harness.wait_for_log(self.log_text, re.compile(regex, re.I), timeout, start)

    def describe(self):
        return ("--- %s ---\n%s\n--- master stderr ---\n%s\n--- %s ---\n%s"
                % (os.path.join(self.config_dir, "main.cf"),
                   harness._read_text(os.path.join(self.config_dir, "main.cf")),
                   harness._read_text(self.stderr_path)[-3000:], self.maillog_path,
                   self.log_text()[-6000:]))

    # -- process --------------------------------------------------------------

    def start(self):
        if self.running():
            return
        self.check()
        master = os.path.join(_daemon_directory(self.config_dir), "master")
        stderr = open(self.stderr_path, "ab")
        try:
            # -d: stay in the foreground (no -w helper), keep stderr for start-up errors.
            # A session of its own: its process group holds only this instance.
            self.process = subprocess.Popen(
                [master, "-d", "-c", self.config_dir],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=subprocess.STDOUT,
                cwd=self.workdir, start_new_session=True)
        finally:
            stderr.close()
        harness._LIVE.add(self)
        try:
            harness.wait_port(HOST, self.port, 15.0, self.process, self.describe)
            # The queue manager answers showq only once the daemons can run: a first
            # postqueue round trip proves the instance usable.
            harness.wait_until(self._showq_ready, 15.0, "Postfix's showq service")
        except Exception:
            self.stop()
            raise

    def _showq_ready(self):
        out = self._run([_find("postqueue"), "-c", self.config_dir, "-j"], check=False)
        return out.returncode == 0

    def running(self):
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def stop(self, timeout=10.0):
        """SIGTERM the master by PID (it passes the signal on to its daemons and exits),
        wait bounded, then SIGKILL whatever is left of its process group."""
        harness._LIVE.discard(self)
        if self.process is None:
            return None
        status = harness._terminate(self.process, timeout)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        # Bounded wait until the group is gone, so that a restart finds the ports free.
        deadline = time.monotonic() + timeout
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(harness.POLL_INTERVAL)
        return status

    def _group_alive(self):
        try:
            os.killpg(self.process.pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

