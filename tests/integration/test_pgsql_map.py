"""Integration tests of the pgsql map module through the real daemon: a real PostgreSQL
(tests/integration/postgres.py), two real Dovecot stores and Switchyard on loopback.

Perdition's nine-field options, the URI + query form rewriting the login, injection attempts
as login names, and a PostgreSQL outage in the middle of a run (temporary failures, then
recovery without restarting Switchyard), also as seen by switchyard-map's exit codes.
The lookup cache is off, so every login asks the database.
"""

import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Dovecot, LineClient, Switchyard, backend_section, imap_quote,  # noqa: E402
                     make_workdir, switchyard_config, wait_for_log)
from postgres import Postgres  # noqa: E402

HOST = "127.0.0.1"
NO_CACHE = "[lookup]\ncache_size = 0\n"
ALIAS_QUERY = ";statement_timeout=2s;query=SELECT servername, port, store_user FROM aliases " \
              "WHERE alias = $1"

INJECTIONS = [
    "*",
    "%",
    "_",
    "' OR '1'='1",
    "ann' --",
    "'; DROP TABLE tblperdition; --",
    '"; DROP TABLE tblperdition; --',
    "ann\\",
    "\\'; DROP TABLE aliases; --",
    "$1",
    "x" * 2000,
]


def login(port, user, password, literal=False):
    """The tagged reply (bytes) to LOGIN, the user sent as a quoted string or a literal."""
    client = LineClient(HOST, port)
    try:
        assert client.readline().startswith(b"* OK")
        if isinstance(user, str):
            user = user.encode("utf-8")
        if literal:
            client.send(b"a LOGIN {%d}\r\n" % len(user))
            cont = client.readline()
            assert cont.startswith(b"+"), cont
            client.send(user + b" " + imap_quote(password) + b"\r\n")
            _, tagged = client.read_until_tagged("a")
        else:
            _, tagged = client.command("a", b"LOGIN " + imap_quote(user) + b" "
                                       + imap_quote(password))
        return tagged
    finally:
        client.close()


class PgsqlMapTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_file(os.path.join(harness.map_dir(), "pgsql.so"), "the pgsql map module")
        cls.tmp = make_workdir("switchyard-pgsql-")
        cls.pg = Postgres(os.path.join(cls.tmp, "pg"))
        cls.store1 = Dovecot("store1", os.path.join(cls.tmp, "store1"),
                             users={"ann": "ann-pw"})
        cls.store2 = Dovecot("store2", os.path.join(cls.tmp, "store2"),
                             users={"cid": "cid-pw", "dan": "dan-pw", "s0042": "s0042-pw"})
        # ann and cid by back-end name; dan by address and the port column.
        cls.pg.sql("""
            INSERT INTO tblperdition ("user", servername, port) VALUES
              ('ann', 'store1', NULL), ('cid', 'store2', ''), ('dan', '127.0.0.1', '%d');
            CREATE TABLE aliases (alias text PRIMARY KEY, store_user text NOT NULL,
                                  servername text NOT NULL, port text);
            INSERT INTO aliases VALUES ('alias@example.org', 's0042', 'store2', NULL);
            GRANT SELECT ON aliases TO perdition;
        """ % cls.store2.imap_port)
        cls.backends = (backend_section("store1", cls.store1.imap_port)
                        + backend_section("store2", cls.store2.imap_port))

    @classmethod
    def tearDownClass(cls):
        for server in (cls.store1, cls.store2, cls.pg):
            server.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.pg.start()  # in case a test stopped it and failed before starting it again

    def config(self, options, port=None, workers=1):
        return switchyard_config(port or harness.free_port(), maps=[("pgsql", options)],
                                 backends=self.backends, workers=workers, extra=NO_CACHE)

    def proxy(self, name, options, workers=1):
        p = Switchyard(None, os.path.join(self.tmp, name), self.config(options, workers=workers))
        self.addCleanup(p.stop)
        return p

    def map_tool(self, name, options, *keys):
        conf = os.path.join(self.tmp, name + ".conf")
        with open(conf, "w") as f:
            f.write(self.config(options))
        tool = harness.require_file(os.path.join(harness.build_dir(), "switchyard-map"),
                                    "switchyard-map")
        return subprocess.run([tool, "-c", conf] + list(keys), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace", timeout=60)

    def assertLoginOk(self, port, user, password, store, store_user=None):
        """LOGIN succeeds, and `store` logs the login of `store_user` (default: `user`)."""
        start = len(store.log_text())
        tagged = login(port, user, password)
        self.assertTrue(tagged.startswith(b"a OK"), tagged)
        wait_for_log(store.log_text, r"Login: user=<%s>" % (store_user or user), 10, start)

    # -- the nine fields ---------------------------------------------------

    def test_perdition_options_route_logins_to_two_stores(self):
        options = self.pg.nine_fields()
        self.assertEqual(options, "127.0.0.1:%d:dbperdition:tblperdition:perdition:secret:"
                                  "servername:user:port" % self.pg.port)
        p = self.proxy("nine-fields", options)
        self.assertLoginOk(p.port, "ann", "ann-pw", self.store1)
        self.assertLoginOk(p.port, "cid", "cid-pw", self.store2)
        self.assertLoginOk(p.port, "dan", "dan-pw", self.store2)  # 127.0.0.1:<store2's port>
        self.assertLoginOk(p.port, "ANN", "ann-pw", self.store1, "ann")  # the key is lowercased
        tagged = login(p.port, "zed", "zed-pw")
        self.assertTrue(tagged.startswith(b"a NO"), tagged)
        self.assertNotIn(b"UNAVAILABLE", tagged)

    # -- the URI and a query -----------------------------------------------

    def test_uri_and_query_rewrite_the_login(self):
        p = self.proxy("uri", self.pg.uri("?connect_timeout=3" + ALIAS_QUERY))
        self.assertLoginOk(p.port, "alias@example.org", "s0042-pw", self.store2, "s0042")
        tagged = login(p.port, "ann", "ann-pw")  # not an alias: not found
        self.assertTrue(tagged.startswith(b"a NO"), tagged)
        self.assertNotIn(b"UNAVAILABLE", tagged)
        self.assertNotIn("secret", harness._read_text(p.log_path))

    # -- injection -------------------------------------------------------------

    def test_injection_attempts_match_nobody_and_break_nothing(self):
        p = self.proxy("injection", self.pg.nine_fields())
        rows_before = self.pg.sql("SELECT count(*) FROM tblperdition")
        log_start = len(self.pg.log_text())
        for name in INJECTIONS:
            for literal in (False, True):
                tagged = login(p.port, name, "pw", literal=literal)
                self.assertTrue(tagged.startswith(b"a NO") or tagged.startswith(b"a BAD"),
                                (name[:40], literal, tagged))
                self.assertNotIn(b"UNAVAILABLE", tagged, (name[:40], literal))
        tagged = login(p.port, b"ann\r\n' OR 1=1; --", "ann-pw", literal=True)  # CRLF inside
        self.assertTrue(tagged.startswith(b"a NO"), tagged)
        self.assertNotIn(b"UNAVAILABLE", tagged)
        # Straight to the map, past the IMAP parser's limits.
        r = self.map_tool("injection-tool", self.pg.nine_fields(), *INJECTIONS)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertEqual(r.stdout.count(": not-found"), len(INJECTIONS), r.stdout)
        # Nothing was dropped or changed, the server saw no malformed SQL, logins still work.
        self.assertEqual(self.pg.sql("SELECT count(*) FROM tblperdition"), rows_before)
        self.assertEqual(self.pg.sql("SELECT count(*) FROM aliases"), "1")
        self.assertNotIn("ERROR", self.pg.log_text()[log_start:])
        self.assertLoginOk(p.port, "ann", "ann-pw", self.store1)

    def test_nul_in_a_login_matches_nobody(self):
        # A NUL may arrive inside an IMAP literal; the C ABI passes the key as a C string,
        # so "ann\0..." must never reach a map as "ann".
        p = self.proxy("nul", self.pg.nine_fields())
        start = len(p.log_text())
        tagged = login(p.port, b"ann\0' OR 1=1; --", "ann-pw", literal=True)
        self.assertFalse(tagged.startswith(b"a OK"), b"logged in as ann: " + tagged)
        self.assertNotIn(b"UNAVAILABLE", tagged)
        wait_for_log(p.log_text, r"session \d+ closed", 10, start)
        self.assertNotIn("backend=store1", p.log_text()[start:],
                         "the login was looked up as 'ann': a NUL truncated the key (RFC 3501 "
                         "literals hold CHAR8, never NUL: the front end must refuse it)")

    # -- outage -----------------------------------------------------------------

    def test_postgres_outage_is_a_temporary_failure_and_recovers(self):
        p = self.proxy("outage", self.pg.nine_fields())
        self.assertLoginOk(p.port, "ann", "ann-pw", self.store1)
        self.pg.stop()
        try:
            for user in ("ann", "zed"):  # known or not: the map cannot tell, never "no such user"
                tagged = login(p.port, user, "pw")
                self.assertTrue(tagged.startswith(b"a NO [UNAVAILABLE]"), tagged)
            wait_for_log(p.log_text, r"switchyard pgsql map: .*(connection lost|cannot connect)",
                         10)
        finally:
            self.pg.start()
        # The same Switchyard, the same worker: the module reconnects by itself.
        self.assertTrue(p.running())
        self.assertLoginOk(p.port, "ann", "ann-pw", self.store1)
        self.assertLoginOk(p.port, "cid", "cid-pw", self.store2)

    def test_cached_users_go_on_during_an_outage(self):
        # With the cache on: users seen recently still log in while PostgreSQL is down
        # (stale answers), the others get NO [UNAVAILABLE], and all is well once it is back.
        conf = switchyard_config(harness.free_port(), maps=[("pgsql", self.pg.nine_fields())],
                                 backends=self.backends, workers=1,
                                 extra='[lookup]\ncache_ttl = "0s"\nstale_ttl = "1h"\n')
        p = Switchyard(None, os.path.join(self.tmp, "stale"), conf)
        self.addCleanup(p.stop)
        self.assertLoginOk(p.port, "ann", "ann-pw", self.store1)
        self.pg.stop()
        try:
            self.assertLoginOk(p.port, "ann", "ann-pw", self.store1)
            wait_for_log(p.log_text, r'user="ann".*map=pgsql\(stale\) result=ok', 10)
            tagged = login(p.port, "cid", "cid-pw")
            self.assertTrue(tagged.startswith(b"a NO [UNAVAILABLE]"), tagged)
        finally:
            self.pg.start()
        self.assertLoginOk(p.port, "cid", "cid-pw", self.store2)

    def test_server_restart_between_logins_is_invisible(self):
        p = self.proxy("restart", self.pg.nine_fields())
        self.assertLoginOk(p.port, "ann", "ann-pw", self.store1)
        self.pg.restart()
        # The worker's session died with the old server: the first lookup finds out,
        # reconnects and asks again.
        self.assertLoginOk(p.port, "cid", "cid-pw", self.store2)
        wait_for_log(p.log_text, r"switchyard pgsql map: perdition@127\.0\.0\.1:%d/dbperdition: "
                                 r"connection lost \(.*\): reconnecting" % self.pg.port, 10)

    def test_switchyard_map_exit_codes(self):
        options = self.pg.nine_fields()
        r = self.map_tool("tool", options, "ann")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertRegex(r.stdout, r"ann: found user=ann backend=store1 host=store1 port=- "
                                   r"imap=127\.0\.0\.1:%d .*map=pgsql" % self.store1.imap_port)
        r = self.map_tool("tool", options, "dan")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertRegex(r.stdout, r"dan: found .*host=127\.0\.0\.1 port=%d"
                                   % self.store2.imap_port)
        r = self.map_tool("tool", options, "ann", "nobody-here")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("nobody-here: not-found", r.stdout)
        self.pg.stop()
        try:
            r = self.map_tool("tool", options, "ann", "nobody-here")
        finally:
            self.pg.start()
        self.assertEqual(r.returncode, 2, r.stdout)
        self.assertIn("ann: tempfail", r.stdout)
        self.assertIn("nobody-here: tempfail", r.stdout)
        self.assertIn("switchyard pgsql map: cannot connect to perdition@127.0.0.1:", r.stdout)
        self.assertNotIn("secret", r.stdout)
        r = self.map_tool("tool", self.pg.uri(ALIAS_QUERY), "alias@example.org")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertRegex(r.stdout, r"alias@example\.org: found user=s0042 backend=store2")


if __name__ == "__main__":
    unittest.main()
