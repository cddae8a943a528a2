"""Perdition's own map modules from Debian (packages perdition, perdition-ldap,
perdition-postgresql) loaded unchanged by Switchyard through module = "/abs/path", routing
logins to real Dovecot stores. LDAP and PostgreSQL ones need the servers of their own test
harnesses and live in test_ldap_map.py / test_pgsql_map.py.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Dovecot, LineClient, Switchyard, switchyard_config  # noqa: E402
from postgres import Postgres  # noqa: E402
from slapd import Slapd  # noqa: E402

LIBDIR = "/usr/lib/x86_64-linux-gnu"
HOST = "127.0.0.1"


def perdition_module(name):
    path = os.path.join(LIBDIR, "libperditiondb_%s.so.0" % name)
    if not os.path.exists(path):
        raise AssertionError("%s is missing: apt-get install perdition (scripts/deps does)" % path)
    return path


class PerditionModulesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="switchyard-perdition-")
        os.chmod(cls.tmp, 0o755)
        users = {"rx1": "rx1-pw", "gd1": "gd1-pw", "gd2": "gd2-pw"}
        cls.store1 = Dovecot("pd1", os.path.join(cls.tmp, "s1"), users=users)
        cls.store2 = Dovecot("pd2", os.path.join(cls.tmp, "s2"), users=users)

    @classmethod
    def tearDownClass(cls):
        cls.store1.stop()
        cls.store2.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def proxy(self, name, module, options):
        port = harness.free_port()
        conf = switchyard_config(port, maps=[(module, options)], backends="")
        p = Switchyard(None, os.path.join(self.tmp, name), conf)
        self.addCleanup(p.stop)
        return p

    def login(self, port, user, password):
        c = LineClient(HOST, port)
        try:
            c.readline()
            return c.command("a", "LOGIN %s %s" % (user, password))[1]
        finally:
            c.close()

    def test_posix_regex_module(self):
        path = os.path.join(self.tmp, "popmap.re")
        with open(path, "w") as f:
            f.write("# Perdition popmap.re\n^rx1$: 127.0.0.1:%d\n" % self.store2.imap_port)
        os.chmod(path, 0o644)
        p = self.proxy("regex", perdition_module("posix_regex"), path)
        start = len(self.store2.log_text())
        self.assertTrue(self.login(p.port, "rx1", "rx1-pw").startswith(b"a OK"))
        harness.wait_for_log(self.store2.log_path, r"Login: user=<rx1>", 10, start)
        self.assertTrue(self.login(p.port, "nomatch", "x").startswith(b"a NO [AUTHENTICATIONFAILED]"))

    def test_gdbm_module_and_switchyard_map(self):
        db = os.path.join(self.tmp, "popmap.db")
        subprocess.run(["makegdbm", db], input=("gd1:127.0.0.1:%d\ngd2:renamed@127.0.0.1:%d\n"
                                                 % (self.store1.imap_port, self.store2.imap_port)
                                                 ).encode(), check=True, timeout=30)
        os.chmod(db, 0o644)
        p = self.proxy("gdbm", perdition_module("gdbm"), db)
        start = len(self.store1.log_text())
        self.assertTrue(self.login(p.port, "gd1", "gd1-pw").startswith(b"a OK"))
        harness.wait_for_log(self.store1.log_path, r"Login: user=<gd1>", 10, start)
        # The gdbm module answers "user@host:port"; the store then sees the renamed user.
        reply = self.login(p.port, "gd2", "gd2-pw")
        self.assertTrue(reply.startswith(b"a NO"), "logged in as 'renamed', who does not exist")
        harness.wait_for_log(p.log_path, r'user="gd2".*store_user="renamed"', 10)
        tool = os.path.join(harness.build_dir(), "switchyard-map")
        r = subprocess.run([tool, "-c", p.conf_path, "gd1", "nobody"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertRegex(r.stdout, r"gd1: found user=gd1 backend=- host=127\.0\.0\.1 port=%d"
                         % self.store1.imap_port)
        self.assertIn("nobody: not-found", r.stdout)


    def test_postgresql_module(self):
        # Perdition's own module pastes names into its SQL unquoted: a table with a
        # non-reserved user column ("user" would be taken as CURRENT_USER).
        pg = Postgres(os.path.join(self.tmp, "pg"))
        self.addCleanup(pg.stop)
        pg.sql("CREATE TABLE popmap (username text PRIMARY KEY, servername text, port text);"
               "INSERT INTO popmap VALUES ('gd1', '127.0.0.1', '%d');"
               "GRANT SELECT ON popmap TO perdition;" % self.store2.imap_port)
        p = self.proxy("pgsql", perdition_module("postgresql"),
                       pg.nine_fields(table="popmap", columns="servername:username:port"))
        start = len(self.store2.log_text())
        self.assertTrue(self.login(p.port, "gd1", "gd1-pw").startswith(b"a OK"))
        harness.wait_for_log(self.store2.log_path, r"Login: user=<gd1>", 10, start)
        self.assertTrue(self.login(p.port, "nobody", "x").startswith(b"a NO [AUTHENTICATIONFAILED]"))
        pg.stop()
        # The database down: a temporary failure, never "unknown user".
        self.assertTrue(self.login(p.port, "ghost", "x").startswith(b"a NO [UNAVAILABLE]"))


    def test_ldap_module_with_the_host_functions(self):
        # Perdition's LDAP module binds with LDAP v2 and calls user_server_port_*() back in
        # the program that loaded it: Switchyard exports them.
        slapd = Slapd(os.path.join(self.tmp, "slapd"))
        self.addCleanup(slapd.stop)
        slapd.add_popmap("gd1", mailhost="127.0.0.1", port=str(self.store1.imap_port))
        slapd.add_popmap("gd2", username="renamed@127.0.0.1:%d" % self.store2.imap_port)
        p = self.proxy("ldap", perdition_module("ldap"), slapd.map_options())
        start = len(self.store1.log_text())
        self.assertTrue(self.login(p.port, "gd1", "gd1-pw").startswith(b"a OK"))
        harness.wait_for_log(self.store1.log_path, r"Login: user=<gd1>", 10, start)
        self.login(p.port, "gd2", "gd2-pw")
        harness.wait_for_log(p.log_path, r'user="gd2".*store_user="renamed"', 10)
        self.assertTrue(self.login(p.port, "nobody", "x").startswith(b"a NO [AUTHENTICATIONFAILED]"))


if __name__ == "__main__":
    unittest.main()
