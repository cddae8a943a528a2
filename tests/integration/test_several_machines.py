"""Several Switchyard machines behind one HAProxy (issue 13, "Several machines"): two
Switchyard instances, one shared PostgreSQL map, a real HAProxy running the shipped
etc/haproxy.cfg.sample (its addresses replaced by loopback ones) with PROXY v2. Logins
spread over both instances, and the client's own address is in both Switchyards' logs and
in Dovecot's.
"""

import os
import re
import shutil
import signal
import socket
import ssl
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import clients  # noqa: E402
import harness  # noqa: E402
from harness import Dovecot, LineClient, Switchyard, toml_string  # noqa: E402
from postgres import Postgres  # noqa: E402

HOST = "127.0.0.1"
CLIENT = "127.0.0.77"   # where the mail clients connect from
USERS = {"u%d" % i: "pw%d" % i for i in range(1, 9)}
PROTOCOLS = ("imap", "imaps", "pop3", "pop3s")


def sample_path():
    return os.path.join(os.environ.get("abs_top_srcdir", os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..")), "etc", "haproxy.cfg.sample")


class SeveralMachinesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_workdir("switchyard-several-")
        cls.servers = []
        try:
            cls._start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _start(cls):
        cls.store = Dovecot("several", os.path.join(cls.tmp, "store"), users=USERS)
        cls.servers.append(cls.store)
        cls.pg = Postgres(os.path.join(cls.tmp, "pg"))
        cls.servers.append(cls.pg)
        for user in USERS:
            cls.pg.sql("INSERT INTO tblperdition (\"user\", servername) VALUES ('%s', 'store1');"
                       % user)
        pki = os.path.join(cls.tmp, "pki")
        cls.ca = harness.make_ca(pki)
        cert = harness.make_cert(pki, "switchyard", cls.ca)
        # Two Switchyards, each with the four listeners HAProxy connects to.
        cls.instances = []
        for name in ("sy1", "sy2"):
            ports = dict(zip(PROTOCOLS, harness.free_ports(4)))
            listen = "".join(
                "[[listen]]\nprotocol = \"%s\"\naddress = \"127.0.0.1:%d\"\n"
                "proxy_protocol = true\ntrusted_proxies = [\"127.0.0.1\"]\n\n" % (p, ports[p])
                for p in PROTOCOLS)
            config = ("workers = 1\nmap_dir = %s\n[log]\ntarget = \"stderr\"\nlevel = \"info\"\n\n"
                      "[tls]\ncert = %s\nkey = %s\n\n%s"
                      "[[map]]\nmodule = \"pgsql\"\noptions = %s\n\n"
                      "[backend.store1]\nhost = \"127.0.0.1\"\nimap = %d\npop3 = %d\n"
                      "forward_client_ip = true\n"
                      % (toml_string(harness.map_dir()), toml_string(cert[0]),
                         toml_string(cert[1]), listen, toml_string(cls.pg.uri()),
                         cls.store.imap_port, cls.store.pop3_port))
            proxy = Switchyard(None, os.path.join(cls.tmp, name), config)
            cls.servers.append(proxy)
            cls.instances.append((proxy, ports))
        # HAProxy with the shipped sample, on loopback ports.
        cls.front = dict(zip(PROTOCOLS, harness.free_ports(4)))
        with open(sample_path(), encoding="utf-8") as f:
            text = f.read()
        default_ports = {"imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995}
        backend_ports = {"imap": 10143, "imaps": 10993, "pop3": 10110, "pop3s": 10995}
        text = text.replace("log /dev/log local0", "log stderr format raw local0 info")
        text = text.replace("maxconn 20000", "maxconn 1000")  # the test's descriptor limit
        for p in PROTOCOLS:
            text = re.sub(r"bind :%d\n" % default_ports[p],
                          "bind 127.0.0.1:%d\n" % cls.front[p], text)
            for (proxy, ports), address in zip(cls.instances, ("192.0.2.11", "192.0.2.12")):
                text = text.replace("%s:%d " % (address, backend_ports[p]),
                                    "127.0.0.1:%d " % ports[p])
        live = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
        if re.search(r"192\.0\.2\.|bind :", live):
            raise AssertionError("the sample changed shape:\n" + text)
        cls.haproxy = clients.HAProxy(os.path.join(cls.tmp, "haproxy"),
                                      [(cls.front[p], HOST, 0) for p in PROTOCOLS])
        with open(cls.haproxy.conf_path, "w", encoding="utf-8") as f:
            f.write(text)
        cls.haproxy.start()
        cls.servers.append(cls.haproxy)

    @classmethod
    def tearDownClass(cls):
        for server in reversed(cls.servers):
            server.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def connect(self, protocol):
        s = socket.socket()
        s.settimeout(10)
        s.bind((CLIENT, 0))
        s.connect((HOST, self.front[protocol]))
        if protocol.endswith("s"):
            context = ssl.create_default_context(cafile=self.ca[0])
            s = context.wrap_socket(s, server_hostname="localhost")
        return s

    def imap_login(self, protocol, user):
        with self.connect(protocol) as s:
            f = s.makefile("rwb")
            self.assertTrue(f.readline().startswith(b"* OK"))
            f.write(b"a LOGIN %s %s\r\n" % (user.encode(), USERS[user].encode()))
            f.flush()
            line = f.readline()
            while line.startswith(b"*"):
                line = f.readline()
            self.assertTrue(line.startswith(b"a OK"), line)
            f.write(b"b LOGOUT\r\n")
            f.flush()

    def pop3_login(self, protocol, user):
        with self.connect(protocol) as s:
            f = s.makefile("rwb")
            self.assertTrue(f.readline().startswith(b"+OK"))
            f.write(b"USER %s\r\n" % user.encode())
            f.flush()
            self.assertTrue(f.readline().startswith(b"+OK"))
            f.write(b"PASS %s\r\n" % USERS[user].encode())
            f.flush()
            line = f.readline()
            self.assertTrue(line.startswith(b"+OK"), line)
            f.write(b"QUIT\r\n")
            f.flush()

    def test_logins_spread_over_both_with_the_clients_address_everywhere(self):
        start_store = len(self.store.log_text())
        for i in range(6):
            self.imap_login("imap", "u%d" % (1 + i % 8))
        for i in range(4):
            self.pop3_login("pop3", "u%d" % (1 + i % 8))
        for i in range(4):
            self.imap_login("imaps", "u%d" % (5 + i % 4))
        for i in range(2):
            self.pop3_login("pop3s", "u%d" % (3 + i))
        for proxy, _ in self.instances:
            harness.wait_until(
                lambda proxy=proxy: re.search(r"imap login ok: .*client=127\.0\.0\.77:\d+ ",
                                              proxy.log_text()),
                10, "an IMAP login through HAProxy on %s" % proxy.workdir)
            log = proxy.log_text()
            self.assertRegex(log, r"pop3 login ok: .*client=127\.0\.0\.77:\d+ ")
            # Nothing but HAProxy's connections, and never its address as the client's.
            self.assertNotRegex(log, r"login ok: .*client=127\.0\.0\.1:")
        def logins():
            return [len(re.findall(r"login ok: ", p.log_text())) for p, _ in self.instances]
        # The last login's line may land a moment after its client got the answer.
        harness.wait_until(lambda: sum(logins()) == 16, 10, "16 logins in the logs: %s" % logins())
        self.assertTrue(all(n > 0 for n in logins()), logins())
        # Dovecot saw the client's address, forwarded by whichever Switchyard took it.
        harness.wait_until(lambda: len(re.findall(r"-login: Info: Login: .*rip=127\.0\.0\.77,",
                                                  self.store.log_text()[start_store:])) >= 16,
                           10, "16 logins in Dovecot's log with rip=127.0.0.77")
        self.assertNotRegex(self.store.log_text()[start_store:],
                            r"-login: Info: Login: .*rip=127\.0\.0\.1,")


    def test_a_health_check_that_resets_at_once_is_not_taken_for_an_untrusted_client(self):
        # A connection reset before the worker looks at it has no peer address any more;
        # it used to be logged as an untrusted (Unix) client of the PROXY listener.
        proxy, ports = self.instances[0]
        worker = harness.children_of(proxy.pid)[0]
        start = len(proxy.log_text())
        os.kill(worker, signal.SIGSTOP)
        try:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.connect((HOST, ports["imap"]))
            s.close()  # RST, before the stopped worker accepts it
        finally:
            os.kill(worker, signal.SIGCONT)
        harness.wait_for_log(proxy.log_path, r"reason=client gone before it was served", 10,
                             start)
        self.assertNotIn("untrusted address", proxy.log_text()[start:])


if __name__ == "__main__":
    unittest.main()
