"""The real-client matrix: third-party clients run the same way directly against a real
Dovecot and through Switchyard in front of that Dovecot, and the mailboxes they end up with
compared message by message (Message-ID and a hash of the content).

  mbsync (isync)  plain IMAP, STARTTLS, IMAPS, with CopyArrivalDate; both directions
  offlineimap3    IMAPS and STARTTLS to a Maildir (retried, and said so, when it hangs)
  fetchmail       IMAP, IMAPS, POP3 with STLS, POP3S, keep mode, to an MDA
  mpop            POP3 with STLS, POP3S, to a Maildir
  mutt            batch copy of a whole IMAP INBOX (plain and IMAPS) to a Maildir, on a pty
  swaks           LMTP, to Dovecot's LMTP and to Switchyard's LMTP router
  HAProxy 2.6     PROXY v2 in front of Switchyard: the client's address reaches Dovecot

Each case has two users on the one Dovecot (NAME-d for direct, NAME-p for through
Switchyard), seeded with the same messages.  Every client run is bounded and the test
asserts its exit status and the mailbox it produced.  SWITCHYARD_KEEP_TMP=1 keeps the
clients' configurations, logs and mail.
"""

import os
import re
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Dovecot, Switchyard, make_ca, make_cert, make_sqlite_map,  # noqa: E402
                     toml_string)
import clients  # noqa: E402
from clients import describe_difference, summary  # noqa: E402

HOST = "127.0.0.1"
# Over TLS the clients connect by name: the certificates are for "localhost" (and its IP
# address, which not every client checks against).
TLS_HOST = "localhost"
MESSAGES = 30                  # per seeded mailbox
CLIENT_TIMEOUT = 20            # seconds, a whole client run (directly it takes < 1 s);
                               # the clients' own network timeouts are 10 s
# offlineimap3 sometimes hangs after STARTTLS even against Dovecot alone: a hung run is
# retried this many times in all, each bounded, and reported on stderr.
OFFLINEIMAP_ATTEMPTS = 3
OFFLINEIMAP_TIMEOUT = 20
HAPROXY_SOURCE = "127.0.0.9"   # HAProxy's own address towards Switchyard
CLIENT_SOURCE = "127.0.0.7"    # a client's address, which must reach Dovecot through both


# Every case has a user for each path (NAME-d directly, NAME-p through Switchyard), all
# made before Dovecot starts: a passwd-file rewritten within the same second may be missed.
CASES = ("mbsync-plain", "mbsync-starttls", "mbsync-imaps", "offlineimap-imaps",
         "offlineimap-starttls", "fetchmail-imap", "fetchmail-imaps", "fetchmail-pop3-stls",
         "fetchmail-pop3s", "mpop-stls", "mpop-pop3s", "mutt-imap", "mutt-imaps", "swaks",
         "swaks2")
USERS = [c + s for c in CASES for s in ("-d", "-p")] + ["hap-imap", "hap-pop3"]


def password_of(user):
    return user + "-pw"


def note(text):
    sys.stderr.write("\n[clients] %s" % text)
    sys.stderr.flush()


class ClientMatrixTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        clients.require_programs("mbsync", "offlineimap", "fetchmail", "mpop", "mutt", "swaks")
        clients.haproxy_binary()
        cls.tmp = harness.make_workdir("switchyard-clients-")
        cls.ca = make_ca(os.path.join(cls.tmp, "ca"))
        certs = os.path.join(cls.tmp, "certs")
        cls.store_cert = make_cert(certs, "store", cls.ca)
        cls.proxy_cert = make_cert(certs, "proxy", cls.ca)
        # %n: LMTP recipients user@example.test are the users of the passwd-file.
        cls.store = Dovecot("clients", os.path.join(cls.tmp, "store"),
                            users={u: password_of(u) for u in USERS},
                            tls=cls.store_cert, extra_conf="auth_username_format = %n\n")
        cls.map_path = make_sqlite_map(os.path.join(cls.tmp, "users.db"),
                                       [(u, "store") for u in USERS])
        (cls.imap, cls.imaps, cls.pop3, cls.pop3s, cls.lmtp, cls.pp_imap,
         cls.pp_pop3) = harness.free_ports(7)
        cls.proxy = Switchyard(None, os.path.join(cls.tmp, "proxy"), cls.config())
        cls.timings = []

    @classmethod
    def config(cls):
        def listen(protocol, port, extra=""):
            return ("[[listen]]\nprotocol = \"%s\"\naddress = \"127.0.0.1:%d\"\n%s\n"
                    % (protocol, port, extra))
        proxied = ("proxy_protocol = true\ntrusted_proxies = [\"%s\"]\n" % HAPROXY_SOURCE)
        return ("workers = 1\nmap_dir = %s\n[log]\ntarget = \"stderr\"\nlevel = \"info\"\n\n"
                "[tls]\ncert = %s\nkey = %s\nca = %s\n\n"
                % (toml_string(harness.map_dir()), toml_string(cls.proxy_cert[0]),
                   toml_string(cls.proxy_cert[1]), toml_string(cls.ca[0]))
                + listen("imap", cls.imap) + listen("imaps", cls.imaps)
                + listen("pop3", cls.pop3) + listen("pop3s", cls.pop3s)
                + listen("lmtp", cls.lmtp)
                + listen("imap", cls.pp_imap, proxied) + listen("pop3", cls.pp_pop3, proxied)
                + "[[map]]\nmodule = \"sqlite\"\noptions = %s\n\n" % toml_string(cls.map_path)
                + "[username]\nstrip_domain = true\n\n[lookup]\ncache_size = 0\n\n"
                + "[backend.store]\nhost = \"127.0.0.1\"\nimap = %d\npop3 = %d\nlmtp = %d\n"
                  "forward_client_ip = true\n"
                % (cls.store.imap_port, cls.store.pop3_port, cls.store.lmtp_port))

    @classmethod
    def tearDownClass(cls):
        for server in ("proxy", "store"):
            if getattr(cls, server, None):
                getattr(cls, server).stop()
        if cls.timings:
            note("timings (seconds):\n" + "\n".join(
                "  %-34s direct %6.2f   switchyard %6.2f" % t for t in cls.timings) + "\n")
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- users, seeded mailboxes, targets ---------------------------------------

    def user(self, name, messages=()):
        """(user, password) of one of USERS, its INBOX seeded with `messages`.

        Each seeded message arrives on its own day (the Maildir file's mtime), which
        CopyArrivalDate must carry over.
        """
        self.assertIn(name, USERS)
        self.assertEqual(self.store.mailbox_files(name), [], "each user serves one run")
        for raw in messages:
            path = self.store.add_message(name, raw)
            stamp = clients.arrival_time(raw)
            os.utime(path, (stamp, stamp))
        return name, password_of(name)

    def pair(self, case, messages):
        """(direct user, switchyard user) for a case, both seeded with `messages`."""
        return self.user(case + "-d", messages), self.user(case + "-p", messages)

    def home(self, case, path):
        home = os.path.join(self.tmp, "run", case, path)
        os.makedirs(home, exist_ok=True)
        return home

    def imap_port(self, path, tls):
        if path == "direct":
            return self.store.imaps_port if tls == "implicit" else self.store.imap_port
        return self.imaps if tls == "implicit" else self.imap

    def pop3_port(self, path, tls):
        if path == "direct":
            return self.store.pop3s_port if tls == "implicit" else self.store.pop3_port
        return self.pop3s if tls == "implicit" else self.pop3

    @staticmethod
    def host(tls):
        return HOST if tls == "none" else TLS_HOST

    def store_messages(self, user):
        return clients.read_files(self.store.mailbox_files(user))

    # -- comparing --------------------------------------------------------------

    def assert_run(self, run, what, user=None, log_start=None):
        """Fail with the client's output, and (log_start: an offset into Switchyard's log)
        what Switchyard logged meanwhile, once it has logged the end of `user`'s session."""
        if run.ok:
            return
        log = ""
        if log_start is not None:
            if user:
                try:
                    harness.wait_for_log(self.proxy.log_path, r'closed: .* user="%s"'
                                         % re.escape(user), 5, log_start)
                except AssertionError:
                    pass
            log = ("\n--- switchyard log since the run started ---\n%s"
                   % self.proxy.log_text()[log_start:][-3000:])
        self.fail("%s failed:\n%s%s" % (what, run, log))

    def assert_mailbox(self, got, expected, what):
        got_s, exp_s = summary(got), summary(expected)
        self.assertEqual(got_s, exp_s, "%s: the mailbox differs from what was expected "
                         "(%d messages, %d expected):\n%s"
                         % (what, len(got), len(expected), describe_difference(exp_s, got_s)))

    def both(self, case, do_one, expected):
        """Run `do_one(path, user, password)` -> (Run, messages) directly, then through
        Switchyard; assert both succeeded and that both mailboxes equal `expected`."""
        direct_user, proxy_user = self.pair(case, expected)
        direct_run, direct_msgs = do_one("direct", *direct_user)
        self.assert_run(direct_run, "%s directly against Dovecot" % case)
        self.assert_mailbox(direct_msgs, expected, "%s directly against Dovecot" % case)
        log_start = len(self.proxy.log_text())
        proxy_run, proxy_msgs = do_one("switchyard", *proxy_user)
        self.timings.append((case, direct_run.elapsed, proxy_run.elapsed))
        self.assert_run(proxy_run, "%s through Switchyard" % case, proxy_user[0], log_start)
        self.assert_mailbox(proxy_msgs, expected, "%s through Switchyard" % case)
        self.assertEqual(summary(proxy_msgs), summary(direct_msgs))
        return direct_msgs, proxy_msgs

    # -- mbsync -----------------------------------------------------------------

    def mbsync(self, case, tls, pushed):
        """Sync INBOX both ways; `pushed` are local messages that must reach the store."""
        def one(path, user, password):
            home = self.home(case, path)
            maildir = clients.make_maildir(os.path.join(home, "mail", "inbox"))
            for i, raw in enumerate(pushed):
                with open(os.path.join(maildir, "new", "local-%d.%s" % (i, path)), "wb") as f:
                    f.write(raw.replace(b"\r\n", b"\n"))
            # An old directory date: mbsync sleeps a second after a recent modification.
            for sub in ("new", "cur"):
                os.utime(os.path.join(maildir, sub), (time.time() - 60,) * 2)
            rc = clients.mbsyncrc(home, self.host(tls), self.imap_port(path, tls), user,
                                  password, tls, self.ca[0], maildir)
            run = clients.run(["mbsync", "-c", rc, "-V", "matrix"], CLIENT_TIMEOUT,
                              env=clients.client_env(home))
            return run, maildir
        seeded = clients.make_messages(MESSAGES)
        direct_user, proxy_user = self.pair(case, seeded)
        expected_here = seeded + list(pushed)
        elapsed = {}
        for path, (user, password) in (("direct", direct_user), ("switchyard", proxy_user)):
            log_start = len(self.proxy.log_text())
            run, maildir = one(path, user, password)
            elapsed[path] = run.elapsed
            if path == "switchyard":
                self.timings.append(("mbsync " + case, elapsed["direct"], run.elapsed))
            what = "mbsync %s %s" % (case, "directly against Dovecot" if path == "direct"
                                     else "through Switchyard")
            self.assert_run(run, what, user, log_start if path == "switchyard" else None)
            local = clients.read_maildir(maildir)
            self.assert_mailbox(local, expected_here, what + " (local Maildir)")
            self.assert_mailbox(self.store_messages(user), expected_here,
                                what + " (the store's INBOX after the push)")
            # CopyArrivalDate: each local file carries the store's arrival date.
            for file_path in clients.maildir_files(maildir):
                with open(file_path, "rb") as f:
                    raw = f.read()
                if clients.message_id(raw).startswith("matrix-"):
                    self.assertEqual(int(os.stat(file_path).st_mtime),
                                     clients.arrival_time(raw),
                                     "%s: arrival date of %s" % (what, file_path))

    def pushed(self, case):
        return clients.make_messages(3, seed=len(case), first=900, prefix="local")

    def test_mbsync_plain(self):
        self.mbsync("mbsync-plain", "none", self.pushed("plain"))

    def test_mbsync_starttls(self):
        self.mbsync("mbsync-starttls", "starttls", self.pushed("starttls"))

    def test_mbsync_imaps(self):
        self.mbsync("mbsync-imaps", "implicit", self.pushed("imaps"))

    # -- offlineimap3 -------------------------------------------------------------

    def offlineimap(self, case, tls):
        def one(path, user, password):
            hung = 0
            for attempt in range(1, OFFLINEIMAP_ATTEMPTS + 1):
                home = self.home(case, "%s-%d" % (path, attempt))
                maildir = os.path.join(home, "mail", "INBOX")
                os.makedirs(os.path.dirname(maildir), exist_ok=True)
                rc = clients.offlineimaprc(home, self.host(tls), self.imap_port(path, tls), user,
                                           password, tls, self.ca[0], maildir)
                run = clients.run(["offlineimap", "-c", rc, "-o", "-u", "basic"],
                                  OFFLINEIMAP_TIMEOUT, env=clients.client_env(home))
                # A hang: no exit in time, or its own socket timeout fired ("timed out", or
                # imaplib2's "no response after N secs" when STARTTLS stalls, which it
                # does directly against Dovecot too).
                if not (run.timed_out or (not run.ok and re.search(
                        rb"timed? ?out|no response after", run.output, re.I))):
                    break
                hung += 1
                note("offlineimap3 %s %s: attempt %d hung (%s); %s"
                     % (case, path, attempt, "no exit within %ds" % OFFLINEIMAP_TIMEOUT
                        if run.timed_out else "its socket timed out",
                        "retrying" if attempt < OFFLINEIMAP_ATTEMPTS else "giving up"))
            self.offlineimap_hangs[(case, path)] = hung
            return run, clients.read_maildir(maildir)
        self.offlineimap_hangs = {}
        self.both(case, one, clients.make_messages(MESSAGES))
        hangs = {k: v for k, v in self.offlineimap_hangs.items() if v}
        if hangs:
            note("offlineimap3 hung and was retried: %s (hangs directly against Dovecot "
                 "are offlineimap3's own)" % ", ".join("%s %s x%d" % (c, p, n)
                                                        for (c, p), n in hangs.items()))

    def test_offlineimap_imaps(self):
        self.offlineimap("offlineimap-imaps", "implicit")

    def test_offlineimap_starttls(self):
        self.offlineimap("offlineimap-starttls", "starttls")

    # -- fetchmail ----------------------------------------------------------------

    def fetchmail(self, case, protocol, tls):
        def one(path, user, password):
            home = self.home(case, path)
            out = os.path.join(home, "delivered")
            os.makedirs(out, exist_ok=True)
            port = (self.imap_port if protocol == "IMAP" else self.pop3_port)(path, tls)
            rc = clients.fetchmailrc(home, self.host(tls), port, protocol, user, password, tls,
                                     self.ca[0], clients.mda_command(out))
            run = clients.run(["fetchmail", "-f", rc, "-v", "--nodetach", "--nosyslog",
                               "--pidfile", os.path.join(home, "fetchmail.pid")],
                              CLIENT_TIMEOUT, env=clients.client_env(home))
            return run, clients.read_directory(out)
        self.both(case, one, clients.make_messages(MESSAGES))

    def test_fetchmail_imap(self):
        self.fetchmail("fetchmail-imap", "IMAP", "none")

    def test_fetchmail_imaps(self):
        self.fetchmail("fetchmail-imaps", "IMAP", "implicit")

    def test_fetchmail_pop3_stls(self):
        self.fetchmail("fetchmail-pop3-stls", "POP3", "starttls")

    def test_fetchmail_pop3s(self):
        self.fetchmail("fetchmail-pop3s", "POP3", "implicit")

    # -- mpop -----------------------------------------------------------------------

    def mpop(self, case, tls, port_of=None, source_ip=None):
        def one(path, user, password):
            home = self.home(case, path)
            maildir = clients.make_maildir(os.path.join(home, "mail"))
            port = port_of(path) if port_of else self.pop3_port(path, tls)
            rc = clients.mpoprc(home, self.host(tls), port, user, password, tls, self.ca[0],
                                maildir,
                                source_ip=source_ip)
            run = clients.run(["mpop", "-C", rc, "--debug", "matrix"], CLIENT_TIMEOUT,
                              env=clients.client_env(home))
            return run, clients.read_maildir(maildir)
        return self.both(case, one, clients.make_messages(MESSAGES))

    def test_mpop_stls(self):
        self.mpop("mpop-stls", "starttls")

    def test_mpop_pop3s(self):
        self.mpop("mpop-pop3s", "implicit")

    # -- mutt -------------------------------------------------------------------------

    def mutt(self, case, tls):
        scheme = {"none": "imap", "implicit": "imaps"}[tls]

        def one(path, user, password):
            home = self.home(case, path)
            out = clients.make_maildir(os.path.join(home, "copied"))
            rc = clients.muttrc(home, user, password, self.ca[0])
            url = "%s://%s@%s:%d/INBOX" % (scheme, user, self.host(tls),
                                           self.imap_port(path, tls))
            # Tag every message, copy the tagged ones to the local Maildir, quit.
            keys = ("<tag-pattern>~A<enter><tag-prefix><copy-message><kill-line>%s<enter>"
                    "<quit>" % out)
            run = clients.run_on_pty(["mutt", "-n", "-F", rc, "-R", "-f", url,
                                      "-e", "push '%s'" % keys],
                                     CLIENT_TIMEOUT, env=clients.client_env(home))
            return run, clients.read_maildir(out)
        self.both(case, one, clients.make_messages(MESSAGES))

    def test_mutt_imap(self):
        self.mutt("mutt-imap", "none")

    def test_mutt_imaps(self):
        self.mutt("mutt-imaps", "implicit")

    # -- swaks over LMTP -------------------------------------------------------------

    def test_swaks_lmtp(self):
        messages = clients.make_messages(8, seed=24, first=400)
        (d1, _), (p1, _) = self.pair("swaks", [])
        (d2, _), (p2, _) = self.pair("swaks2", [])
        home = self.home("swaks", "all")
        timings = {"direct": 0.0, "switchyard": 0.0}
        for path, port, first, second in (("direct", self.store.lmtp_port, d1, d2),
                                          ("switchyard", self.lmtp, p1, p2)):
            log_start = len(self.proxy.log_text())
            for i, raw in enumerate(messages):
                data = os.path.join(home, "message-%d.eml" % i)
                with open(data, "wb") as f:
                    # swaks ends the data with CRLF "." CRLF itself.
                    f.write(raw[:-2])
                # The last message goes to two recipients in one transaction.
                rcpts = ["%s@%s" % (first, clients.DOMAIN)]
                if i == len(messages) - 1:
                    rcpts.append("%s@%s" % (second, clients.DOMAIN))
                run = clients.run(["swaks", "--protocol", "LMTP", "--server",
                                   "%s:%d" % (HOST, port), "--helo", "client.test",
                                   "--from", "sender@%s" % clients.DOMAIN,
                                   "--to", ",".join(rcpts), "--data", "@" + data,
                                   "--timeout", "15", "-n"],
                                  CLIENT_TIMEOUT, env=clients.client_env(home))
                timings[path] += run.elapsed
                self.assert_run(run, "swaks LMTP %s message %d" % (path, i), None,
                                log_start if path == "switchyard" else None)
                for r in rcpts:
                    self.assertIn("250", run.output.decode("utf-8", "replace"))
        self.timings.append(("swaks lmtp (8 messages)", timings["direct"],
                             timings["switchyard"]))
        for direct, proxied, expected in ((d1, p1, messages), (d2, p2, messages[-1:])):
            for user in (direct, proxied):
                got = self.store_messages(user)
                self.assert_mailbox(got, expected, "LMTP delivery to %s" % user)
                for raw in got:
                    # Dovecot writes Delivered-To only when the transaction has one recipient.
                    alone = clients.message_id(raw) != clients.message_id(messages[-1])
                    self.assertEqual(clients.field_values(raw, "Delivered-To"),
                                     ["%s@%s" % (user, clients.DOMAIN)] if alone else [])
                    self.assertEqual(clients.field_values(raw, "Return-Path"),
                                     ["<sender@%s>" % clients.DOMAIN])

    # -- HAProxy with PROXY v2 -----------------------------------------------------------

    def test_haproxy_proxy_v2(self):
        hap_imap, hap_pop3 = harness.free_ports(2)
        haproxy = clients.HAProxy(os.path.join(self.tmp, "haproxy"),
                                  [(hap_imap, HOST, self.pp_imap), (hap_pop3, HOST, self.pp_pop3)],
                                  source=HAPROXY_SOURCE)
        haproxy.start()
        self.addCleanup(haproxy.stop)
        start = len(self.store.log_text())
        # IMAP: mbsync from 127.0.0.1 through HAProxy (which connects from 127.0.0.9).
        seeded = clients.make_messages(MESSAGES)
        user, password = self.user("hap-imap", seeded)
        home = self.home("haproxy", "imap")
        maildir = clients.make_maildir(os.path.join(home, "mail", "inbox"))
        rc = clients.mbsyncrc(home, HOST, hap_imap, user, password, "none", self.ca[0], maildir)
        run = clients.run(["mbsync", "-c", rc, "-V", "matrix"], CLIENT_TIMEOUT,
                          env=clients.client_env(home))
        self.assert_run(run, "mbsync through HAProxy and Switchyard\n%s" % haproxy.log_text(),
                        user, 0)
        self.assert_mailbox(clients.read_maildir(maildir), seeded, "mbsync through HAProxy")
        m = harness.wait_for_log(self.store.log_path,
                                 r"imap-login: Info: Login: user=<hap-imap>.*rip=([^,]+),",
                                 10, start)
        self.assertEqual(m.group(1), HOST, "the client's address, not HAProxy's (%s)"
                         % HAPROXY_SOURCE)
        # POP3: mpop bound to 127.0.0.7, through HAProxy.
        user, password = self.user("hap-pop3", seeded)
        home = self.home("haproxy", "pop3")
        maildir = clients.make_maildir(os.path.join(home, "mail"))
        rc = clients.mpoprc(home, HOST, hap_pop3, user, password, "none", self.ca[0],
                            maildir, source_ip=CLIENT_SOURCE)
        run = clients.run(["mpop", "-C", rc, "matrix"], CLIENT_TIMEOUT,
                          env=clients.client_env(home))
        self.assert_run(run, "mpop through HAProxy and Switchyard\n%s" % haproxy.log_text(),
                        user, 0)
        self.assert_mailbox(clients.read_maildir(maildir), seeded, "mpop through HAProxy")
        m = harness.wait_for_log(self.store.log_path,
                                 r"pop3-login: Info: Login: user=<hap-pop3>.*rip=([^,]+),",
                                 10, start)
        self.assertEqual(m.group(1), CLIENT_SOURCE)
        # Switchyard saw HAProxy's connections and logged the clients they carried.
        log = self.proxy.log_text()
        self.assertRegex(log, r"imap login ok: .*client=127\.0\.0\.1:\d+ user=\"hap-imap\"")
        self.assertRegex(log, r"pop3 login ok: .*client=127\.0\.0\.7:\d+ user=\"hap-pop3\"")


if __name__ == "__main__":
    unittest.main()
