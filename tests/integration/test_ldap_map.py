"""The ldap map module (maps/ldap) against a real slapd (tests/integration/slapd.py).

LdapModuleTest, LdapReconnectTest and LdapTlsTest call the module's three functions
directly (through tests/modules/maphost, as the host calls them): answers, return codes, RFC 4515 escaping, binds,
reconnection, fork, timeouts, StartTLS and ldaps.  SchemaFilesTest loads schema/perdition.*
into slapd.  LdapProxyTest runs the module in the real daemon in front of two real Dovecot
stores; LdapOutageTest stops and restarts the directory under a running Switchyard and asks
switchyard-map.  Everything is on 127.0.0.1 in fresh temporary directories; every server is
stopped by its PID.  The module's option syntax and pure parts are unit-tested in
maps/ldap/test_ldap.cc.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Dovecot, LineClient, Switchyard, backend_section, imap_quote,  # noqa: E402
                     switchyard_config)
from slapd import MAILBOX, PRIVATE, READER_DN, READER_PW, Slapd, schema_ldif  # noqa: E402

HOST = "127.0.0.1"
READER_EXT = "bindname=%s,x-bindpw=%s" % (READER_DN.replace(",", "%2C"), READER_PW)


def module_path():
    return harness.require_file(os.path.join(harness.map_dir(), "ldap.so"), "the ldap map")


def maphost_binary():
    return harness.require_file(os.path.join(harness.build_dir(), "tests", "modules", "maphost"),
                                "tests/modules/maphost (make check builds it)")


def _hex(value):
    if value is None:
        return "-"
    return "x" + (value.encode("utf-8") if isinstance(value, str) else value).hex()


class ModuleClient:
    """The module loaded by tests/modules/maphost, a host process of its own that calls the
    three functions as the daemon does (a module built with sanitizers cannot be loaded into
    Python); everything the module writes to stderr is collected into `log`."""

    def __init__(self, path, env=None):
        self._stderr = tempfile.TemporaryFile()
        self.host = subprocess.Popen([maphost_binary(), path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr, env=env)
        self._log_bytes = b""

    @property
    def log(self):
        if self._stderr.closed:
            return self._log_bytes.decode("utf-8", "replace")
        self._stderr.seek(len(self._log_bytes))
        self._log_bytes += self._stderr.read()
        return self._log_bytes.decode("utf-8", "replace")

    def _call(self, *words):
        self.host.stdin.write((" ".join(words) + "\n").encode())
        self.host.stdin.flush()
        reply = self.host.stdout.readline().decode()
        if not reply:
            raise AssertionError("maphost exited (status %s): %s"
                                 % (self.host.wait(timeout=10), self.log[-2000:]))
        return reply.split()

    def init(self, options):
        return int(self._call("init", _hex(options))[0])

    def get(self, key, options=None):
        """(return code, value or None)."""
        rc, value = self._call("get", _hex(key), _hex(options))
        return int(rc), (None if value == "-" else
                         bytes.fromhex(value[1:]).decode("utf-8", "replace"))

    def fork_get(self, key, options=None):
        """The exit status of a forked child that calls get, then fini."""
        return int(self._call("forkget", _hex(key), _hex(options))[0])

    def fini(self):
        if self.host.poll() is not None:
            return None
        return int(self._call("fini")[0])

    def close(self):
        """End of input: the host exits; returns its exit status."""
        if self.host.poll() is None:
            self.host.stdin.close()
            try:
                self.host.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.host.kill()
                self.host.wait(timeout=20)
        self.host.stdout.close()
        self.log  # noqa: B018 - collects the rest of stderr
        self._stderr.close()
        return self.host.returncode


# ---------------------------------------------------------------------------
# The module on its own.

class LdapModuleTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_workdir("switchyard-ldap-")
        try:
            cls.client = ModuleClient(module_path())
            cls.slapd = Slapd(os.path.join(cls.tmp, "slapd"))
            s = cls.slapd
            s.add_entries("dn: ou=sub,%s\nobjectClass: organizationalUnit\nou: sub\n" % MAILBOX)
            s.add_popmap("jane", mailhost="store1", port="143")
            s.add_popmap("joe", mailhost="store2")
            s.add_popmap("bob", username="s0042", mailhost="store3", port="993")
            s.add_popmap("onlyuser", username="jd@store4:110")
            s.add_popmap("portnohost", username="store5", port="993")
            s.add_popmap("bare")
            s.add_popmap("v6", mailhost="::1", port="143")
            s.add_popmap("multi", mailhost=["first.example", "second.example"])
            s.add_popmap("padded", mailhost="  store6  ", port=" 110 ")
            s.add_popmap("j\u00f6rg", mailhost="utf8-store")
            s.add_popmap("star*", mailhost="star-store")
            s.add_popmap("paren(x)", mailhost="paren-store")
            s.add_popmap("back\\slash", rdn="uid=back\\5cslash", mailhost="backslash-store")
            s.add_popmap("deep", mailhost="deep-store", base="ou=sub," + MAILBOX)
            s.add_popmap("vip", mailhost="vip-store", base=PRIVATE)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        status = None
        if getattr(cls, "client", None):
            cls.client.fini()
            status = cls.client.close()
        if getattr(cls, "slapd", None):
            cls.slapd.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)
        if status not in (None, 0):
            raise AssertionError("maphost exited with status %s: %s" % (status, cls.client.log[-3000:]))

    def setUp(self):
        self.client.fini()
        self.log_start = len(self.client.log)

    def options(self, **kw):
        return self.slapd.map_options(**kw)

    def lookup(self, key, **kw):
        options = self.options(**kw)
        return self.client.get(key, options)

    def new_log(self):
        return self.client.log[self.log_start:]

    # -- answers ----------------------------------------------------------------

    def test_the_three_attributes_make_the_answer(self):
        options = self.options()
        self.assertEqual(self.client.init(options), 0, self.new_log())
        self.assertEqual(self.client.get("jane", options), (0, "store1:143"))
        self.assertEqual(self.client.get("joe", options), (0, "store2"))
        self.assertEqual(self.client.get("bob", options), (0, "s0042@store3:993"))
        self.assertEqual(self.client.get("v6", options), (0, "[::1]:143"))
        self.assertEqual(self.client.get("padded", options), (0, "store6:110"))
        self.assertEqual(self.client.get("jane", None), (0, "store1:143"))  # init's options
        self.assertEqual(self.new_log(), "")

    def test_user_attribute_alone_is_returned_as_is(self):
        self.assertEqual(self.lookup("onlyuser"), (0, "jd@store4:110"))
        self.assertEqual(self.lookup("portnohost"), (0, "store5"))

    def test_first_value_of_a_multi_valued_attribute(self):
        self.assertEqual(self.lookup("multi"), (0, "first.example"))

    def test_entry_without_values_is_other_error(self):
        self.assertEqual(self.lookup("bare"), (-3, None))
        self.assertIn("has no value for mailhost or username", self.new_log())

    def test_unknown_key_is_not_found(self):
        for key in ("nobody", "", "jan", "janet", "jane.", "jane x"):
            self.assertEqual(self.lookup(key), (-2, None), key)
        self.assertEqual(self.new_log(), "")

    def test_case_follows_the_servers_matching_rule(self):
        # uid's caseIgnoreMatch ignores case and leading, trailing and repeated spaces.
        self.assertEqual(self.lookup("JANE"), (0, "store1:143"))
        self.assertEqual(self.lookup(" jane "), (0, "store1:143"))

    def test_scope(self):
        self.assertEqual(self.lookup("deep", scope="one"), (-2, None))
        self.assertEqual(self.lookup("deep", scope="sub"), (0, "deep-store"))
        self.assertEqual(self.lookup("deep", base="uid=deep,ou=sub," + MAILBOX, scope="base"),
                         (0, "deep-store"))

    def test_attribute_list_and_filter_are_configurable(self):
        self.assertEqual(self.lookup("jane", attributes="mailhost"), (0, "store1"))
        self.assertEqual(self.lookup("bob", attributes="username,mailhost"), (0, "s0042@store3"))
        # A filter without %s is used as it is.
        self.assertEqual(self.lookup("anything", filter="(uid=joe)"), (0, "store2"))
        # Two placeholders.
        self.assertEqual(self.lookup("store2", filter="(|(uid=%s)(mailhost=%s))"),
                         (0, "store2"))

    # -- escaping ---------------------------------------------------------------

    def test_injection_attempts_match_nothing(self):
        keys = ["*", ")(uid=*", "*)(|(uid=*", "jane)(uid=*", "j*", "jan*", "*ane", "\\",
                "\\2a", "(uid=jane)", "jane\\", "'; DROP", '"', "jane)", "!", "&",
                "|(uid=*)", "jane\r\n", "\x01", "\x7f", "\xff", "x" * 2000]
        for key in keys:
            self.assertEqual(self.lookup(key), (-2, None), repr(key))
        self.assertEqual(self.new_log(), "")
        # The server saw each key as a value, never as filter syntax.
        log = self.slapd.log_text()
        for escaped in (r"(uid=\2A)", r"(uid=\29\28uid=\2A)", r"(uid=jane\5C)",
                        r"(uid=\5C2a)"):
            self.assertIn(escaped.lower(), log.lower())

    def test_special_characters_are_matched_literally(self):
        self.assertEqual(self.lookup("star*"), (0, "star-store"))
        self.assertEqual(self.lookup("paren(x)"), (0, "paren-store"))
        self.assertEqual(self.lookup("back\\slash"), (0, "backslash-store"))
        self.assertEqual(self.lookup("star"), (-2, None))

    def test_utf8_key_matches_through_hex_escapes(self):
        self.assertEqual(self.lookup("j\u00f6rg"), (0, "utf8-store"))
        self.assertEqual(self.lookup("J\u00d6RG"), (0, "utf8-store"))  # the server folds case
        self.assertEqual(self.lookup(b"j\xf6rg"), (-2, None))  # Latin-1: other octets

    # -- binds ------------------------------------------------------------------

    def test_bind_as_reader_sees_the_private_subtree(self):
        options = self.options(base=PRIVATE, extensions=READER_EXT)
        self.assertEqual(self.client.init(options), 0)
        self.assertEqual(self.client.get("vip", options), (0, "vip-store"))
        # Anonymous binds see nothing there: the ACL hides it (no entry, not an error).
        self.assertEqual(self.lookup("vip", base=PRIVATE), (-2, None))
        self.assertNotIn(READER_PW, self.new_log())

    def test_critical_marks_are_accepted(self):
        ext = "!bindname=%s,!x-bindpw=%s,!x-timeout=3" % (READER_DN.replace(",", "%2c"),
                                                           READER_PW)
        self.assertEqual(self.lookup("vip", base=PRIVATE, extensions=ext), (0, "vip-store"))

    def test_wrong_bind_password_is_a_directory_error(self):
        ext = "bindname=%s,x-bindpw=Wr0ng-Pass" % READER_DN.replace(",", "%2C")
        options = self.options(base=PRIVATE, extensions=ext)
        self.assertEqual(self.client.init(options), 0)  # not fatal: reported
        self.assertEqual(self.client.get("vip", options), (-1, None))
        self.assertEqual(self.client.get("nobody", options), (-1, None))  # never -2
        log = self.new_log()
        self.assertIn("Invalid credentials", log)
        self.assertIn(READER_DN, log)
        self.assertNotIn("Wr0ng-Pass", log)

    def test_unknown_bind_dn_is_a_directory_error(self):
        ext = "bindname=cn=ghost%2Cdc=example%2Cdc=com,x-bindpw=x"
        self.assertEqual(self.lookup("jane", extensions=ext), (-1, None))

    def test_bindname_without_password_is_refused_by_the_server(self):
        # An unauthenticated bind (RFC 4513 5.1.2), which slapd refuses by default.
        ext = "bindname=" + READER_DN.replace(",", "%2C")
        self.assertEqual(self.lookup("jane", extensions=ext), (-1, None))
        self.assertIn("Server is unwilling to perform", self.new_log())

    def test_ldap_version_2_bind(self):
        self.assertEqual(self.lookup("jane", version=2), (0, "store1:143"))
        self.assertEqual(self.lookup("vip", base=PRIVATE, extensions=READER_EXT, version=2),
                         (0, "vip-store"))
        self.assertIn("BIND dn=\"%s\" method=128" % READER_DN, self.slapd.log_text())

    # -- directory errors -------------------------------------------------------

    def test_missing_search_base_is_a_directory_error(self):
        # A base that is missing (or hidden from the bind identity) is a configuration
        # problem, not "every user unknown".
        self.assertEqual(self.lookup("jane", base="ou=nowhere,dc=example,dc=com"), (-1, None))
        self.assertIn("No such object", self.new_log())

    def test_bad_filter_is_other_error(self):
        self.assertEqual(self.lookup("jane", filter="(uid=%s"), (-3, None))
        self.assertEqual(self.lookup("jane", filter="((uid=%s)"), (-3, None))

    def test_second_host_is_tried_when_the_first_is_down(self):
        dead = harness.free_port()
        options = self.options(scheme_host="ldap://127.0.0.1:%d,127.0.0.1:%d"
                               % (dead, self.slapd.port))
        self.assertEqual(self.client.init(options), 0)
        self.assertEqual(self.client.get("jane", options), (0, "store1:143"))
        options = self.options(scheme_host="ldap://127.0.0.1:%d 127.0.0.1:%d"
                               % (dead, self.slapd.port))
        self.assertEqual(self.client.get("joe", options), (0, "store2"))

    def test_unix_socket(self):
        self.assertEqual(self.lookup("jane", scheme_host=self.slapd.ldapi_url), (0, "store1:143"))

    def test_starttls_against_a_server_without_tls_is_refused(self):
        self.assertEqual(self.lookup("jane", extensions="x-starttls"), (-1, None))
        self.assertIn("StartTLS", self.new_log())

    def test_bad_options_are_other_error(self):
        for options in ("ldap://127.0.0.1:%d/%s?username?one?(uid=%%s)?x-bindpwd=oops"
                        % (self.slapd.port, MAILBOX), "https://example.com/",
                        "ldap://127.0.0.1:%d/notadn" % self.slapd.port):
            self.assertEqual(self.client.init(options), -3, options)
            self.assertEqual(self.client.get("jane", options), (-3, None), options)

    def test_two_option_strings_keep_two_connections(self):
        public = self.options()
        private = self.options(base=PRIVATE, extensions=READER_EXT)
        self.assertEqual(self.client.init(public), 0)
        self.assertEqual(self.client.init(private), 0)
        accepts = self.slapd.log_text().count(" ACCEPT ")
        for _ in range(3):
            self.assertEqual(self.client.get("jane", public), (0, "store1:143"))
            self.assertEqual(self.client.get("vip", private), (0, "vip-store"))
        self.assertEqual(self.slapd.log_text().count(" ACCEPT "), accepts)

    def test_forked_child_does_not_touch_the_parents_connection(self):
        options = self.options()
        self.assertEqual(self.client.init(options), 0)
        self.assertEqual(self.client.get("jane", options), (0, "store1:143"))
        parent_conn = re.findall(r"conn=(\d+) op=\d+ SRCH ", self.slapd.log_text())[-1]
        accepts = self.slapd.log_text().count(" ACCEPT ")
        self.assertEqual(self.client.fork_get("joe", options), 0)
        # The parent goes on with the connection it had, which the child left alone.
        self.assertEqual(self.client.get("jane", options), (0, "store1:143"))
        log = self.slapd.log_text()
        self.assertEqual(log.count(" ACCEPT "), accepts + 1)  # the child's own
        self.assertEqual(re.findall(r"conn=(\d+) op=\d+ SRCH ", log)[-1], parent_conn)
        self.assertNotRegex(log, r"conn=%s (op=\d+ UNBIND|fd=\d+ closed)" % parent_conn)

    def test_exports_only_perditions_functions(self):
        nm = shutil.which("nm")
        if not nm:
            self.fail("nm (binutils) not installed: apt-get install binutils")
        out = subprocess.run([nm, "-D", "--defined-only", module_path()], check=True,
                             stdout=subprocess.PIPE, text=True, timeout=30).stdout
        names = {line.split()[-1] for line in out.splitlines() if line.strip()}
        self.assertEqual(names, {"dbserver_init", "dbserver_get", "dbserver_fini",
                                 "switchyard_map_thread_safe"})


class LdapReconnectTest(unittest.TestCase):
    """A directory of its own, stopped, restarted, hung."""

    def setUp(self):
        self.tmp = harness.make_workdir("switchyard-ldap-re-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.client = ModuleClient(module_path())
        self.client.fini()
        self.addCleanup(lambda: self.assertEqual(self.client.close(), 0, self.client.log[-3000:]))
        self.addCleanup(self.client.fini)
        self.slapd = Slapd(os.path.join(self.tmp, "slapd"))
        self.addCleanup(self.slapd.stop)
        self.slapd.add_popmap("jane", mailhost="store1", port="143")
        self.options = self.slapd.map_options(extensions="x-timeout=1")
        self.assertEqual(self.client.init(self.options), 0)
        self.assertEqual(self.client.get("jane", self.options), (0, "store1:143"))

    def test_restart_between_lookups_is_invisible(self):
        self.slapd.stop()
        self.slapd.start()
        # The kept connection is dead; the lookup retries once on a fresh one.
        self.assertEqual(self.client.get("jane", self.options), (0, "store1:143"))
        self.assertEqual(self.client.get("nobody", self.options), (-2, None))

    def test_down_is_a_directory_error_until_it_is_back(self):
        self.slapd.stop()
        started = time.monotonic()
        self.assertEqual(self.client.get("jane", self.options), (-1, None))
        self.assertEqual(self.client.get("nobody", self.options), (-1, None))  # never -2
        self.assertLess(time.monotonic() - started, 1.5)  # refused: no waiting
        self.assertIn("Can't contact LDAP server", self.client.log)
        self.slapd.start()
        self.assertEqual(self.client.get("jane", self.options), (0, "store1:143"))

    def test_init_while_down_is_not_fatal(self):
        self.slapd.stop()
        self.assertEqual(self.client.init(self.options), 0)
        self.assertEqual(self.client.get("jane", self.options), (-1, None))
        self.slapd.start()
        self.assertEqual(self.client.get("jane", self.options), (0, "store1:143"))

    def test_hung_server_times_out(self):
        os.kill(self.slapd.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            self.assertEqual(self.client.get("jane", self.options), (-1, None))
            took = time.monotonic() - started
            # The search times out (1 s), the retry's bind too (1 s): bounded by x-timeout.
            self.assertGreaterEqual(took, 0.9)
            self.assertLess(took, 8.0)  # bounded (a busy CI machine may add some)
        finally:
            os.kill(self.slapd.pid, signal.SIGCONT)
        self.assertEqual(self.client.get("jane", self.options), (0, "store1:143"))


class LdapTlsTest(unittest.TestCase):
    """StartTLS (x-starttls) and ldaps:// against a slapd with a certificate of our CA."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_workdir("switchyard-ldap-tls-")
        try:
            cls.client = ModuleClient(module_path())
            pki = os.path.join(cls.tmp, "pki")
            cls.ca = harness.make_ca(pki)
            cls.other_ca = harness.make_ca(os.path.join(pki, "other"), "Some Other CA")
            cert, key = harness.make_cert(pki, "ldap", cls.ca)
            cls.slapd = Slapd(os.path.join(cls.tmp, "slapd"), tls=(cert, key))
            cls.slapd.add_popmap("jane", mailhost="store1", port="143")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        status = None
        if getattr(cls, "client", None):
            cls.client.fini()
            status = cls.client.close()
        if getattr(cls, "slapd", None):
            cls.slapd.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if status not in (None, 0):
            raise AssertionError("maphost exited with status %s: %s" % (status, cls.client.log[-3000:]))

    def setUp(self):
        self.client.fini()

    def test_starttls_with_our_ca(self):
        options = self.slapd.map_options(extensions="x-starttls,x-cacert=" + self.ca[0])
        self.assertEqual(self.client.init(options), 0, self.client.log)
        self.assertEqual(self.client.get("jane", options), (0, "store1:143"))
        self.assertRegex(self.slapd.log_text(), r"op=\d+ STARTTLS")
        self.assertRegex(self.slapd.log_text(), r"TLS established tls_ssf=\d+")

    def test_starttls_then_bind(self):
        ext = "x-starttls,x-cacert=%s,%s" % (self.ca[0], READER_EXT)
        self.assertEqual(self.client.get("jane", self.slapd.map_options(extensions=ext)),
                         (0, "store1:143"))

    def test_ldaps_with_our_ca(self):
        options = self.slapd.map_options(scheme_host=self.slapd.ldaps_url,
                                         extensions="x-cacert=" + self.ca[0])
        self.assertEqual(self.client.get("jane", options), (0, "store1:143"))

    def test_certificate_of_another_ca_is_refused(self):
        start = len(self.client.log)
        for options in (
                self.slapd.map_options(extensions="x-starttls,x-cacert=" + self.other_ca[0]),
                self.slapd.map_options(scheme_host=self.slapd.ldaps_url,
                                       extensions="x-cacert=" + self.other_ca[0])):
            self.assertEqual(self.client.get("jane", options), (-1, None), options)
        self.assertNotIn("store1", self.client.log[start:])

    def test_missing_ca_file_is_a_directory_error(self):
        options = self.slapd.map_options(extensions="x-starttls,x-cacert=/nonexistent/ca.pem")
        start = len(self.client.log)
        self.assertEqual(self.client.get("jane", options), (-1, None))
        self.assertIn("x-cacert /nonexistent/ca.pem: No such file or directory",
                      self.client.log[start:])

    def test_dead_connection_does_not_kill_a_host_that_keeps_sigpipe(self):
        # maphost, like switchyard and Perdition, keeps SIGPIPE's default action (Python
        # ignores it). With TLS, libldap writes to the connection slapd closed (the TLS
        # goodbye): that must not kill the host.
        options = self.slapd.map_options(extensions="x-starttls,x-cacert=" + self.ca[0])
        host = ModuleClient(module_path())
        self.addCleanup(host.close)
        self.assertEqual(host.init(options), 0, host.log)
        self.assertEqual(host.get("jane", options), (0, "store1:143"))
        self.slapd.stop()
        try:
            self.assertEqual(host.get("jane", options), (-1, None), host.log)
            self.assertEqual(host.get("jane", options), (-1, None), host.log)
            self.assertEqual(host.fini(), 0)
        finally:
            self.slapd.start()
        self.assertEqual(host.close(), 0, host.log)

    def test_verification_cannot_be_turned_off_from_the_environment(self):
        # libldap reads LDAPTLS_REQCERT (like ldap.conf's TLS_REQCERT) once per process: a
        # fresh host with it set to "never" must still refuse an unknown CA.
        env = dict(os.environ, LDAPTLS_REQCERT="never")
        for options in (self.slapd.map_options(extensions="x-starttls"),
                        self.slapd.map_options(extensions="x-starttls,x-cacert="
                                               + self.other_ca[0])):
            host = ModuleClient(module_path(), env=env)
            self.addCleanup(host.close)
            self.assertEqual(host.get("jane", options), (-1, None), host.log)
            host.fini()
            self.assertEqual(host.close(), 0, host.log)


class SchemaFilesTest(unittest.TestCase):
    """schema/perdition.schema (slapd.conf) and schema/perdition.ldif (cn=config)."""

    @staticmethod
    def schema_file():
        return os.path.join(os.path.dirname(schema_ldif()), "perdition.schema")

    def slaptest(self, *schemas):
        """slaptest -u on a slapd.conf that includes `schemas`: (status, output)."""
        slaptest = shutil.which("slaptest", path=os.environ.get("PATH", "") + ":/usr/sbin")
        if not slaptest:
            self.fail("slaptest not installed: apt-get install slapd")
        tmp = tempfile.mkdtemp(prefix="switchyard-schema-")
        self.addCleanup(shutil.rmtree, tmp, True)
        conf = os.path.join(tmp, "slapd.conf")
        with open(conf, "w") as f:
            f.writelines("include %s\n" % s for s in schemas)
        result = subprocess.run([slaptest, "-u", "-f", conf], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                timeout=30)
        return result.returncode, result.stdout

    def system(self, name):
        return "/etc/ldap/schema/%s.schema" % name

    def test_slapd_conf_schema_loads(self):
        status, out = self.slaptest(self.system("core"), self.system("cosine"), self.schema_file())
        self.assertEqual(status, 0, out)

    def test_ldif_and_schema_define_the_same(self):
        with open(self.schema_file()) as f:
            schema = f.read()
        with open(schema_ldif()) as f:
            ldif = re.sub(r"\n ", "", f.read())  # LDIF line folding
        from_schema = [" ".join(m.split()) for m in re.findall(
            r"^(?:attributetype|objectclass)\s+(\(.*?\))\s*$(?=\n\n|\Z)", schema, re.S | re.M)]
        from_ldif = [" ".join(m.split()) for m in re.findall(
            r"^olc(?:AttributeTypes|ObjectClasses): (.*)$", ldif, re.M)]
        self.assertEqual(len(from_schema), 4, from_schema)
        self.assertEqual(from_schema, from_ldif)
        for oid, name in (("1.3.6.1.4.1.12856.10.10", "username"),
                          ("1.3.6.1.4.1.12856.10.11", "mailhost"),
                          ("1.3.6.1.4.1.12856.10.12", "port"),
                          ("1.3.6.1.4.1.12856.10.100", "perditionPopmap")):
            self.assertTrue(any(d.startswith("( %s NAME '%s' " % (oid, name))
                                for d in from_ldif), (oid, name))

    def test_mailhost_clashes_with_misc_schema_and_the_documented_way_out(self):
        status, out = self.slaptest(self.system("core"), self.system("cosine"),
                                    self.system("misc"), self.schema_file())
        self.assertNotEqual(status, 0)
        self.assertIn('duplicate attributeType: "mailhost"', out)
        # As perdition.schema says: without its mailhost, misc.schema's mailHost serves.
        with open(self.schema_file()) as f:
            schema = f.read()
        trimmed = re.sub(r"attributetype \( 1\.3\.6\.1\.4\.1\.12856\.10\.11\s.*?\)\n", "",
                         schema, flags=re.S)
        self.assertNotRegex(trimmed, r"12856\.10\.11\s")
        tmp = tempfile.mkdtemp(prefix="switchyard-schema-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "perdition-without-mailhost.schema")
        with open(path, "w") as f:
            f.write(trimmed)
        status, out = self.slaptest(self.system("core"), self.system("cosine"),
                                    self.system("misc"), path)
        self.assertEqual(status, 0, out)

    def test_ldif_loads_with_ldapadd_into_a_running_slapd(self):
        tmp = harness.make_workdir("switchyard-ldap-schema-")
        self.addCleanup(shutil.rmtree, tmp, True)
        slapd = Slapd(os.path.join(tmp, "slapd"), with_schema=False)
        self.addCleanup(slapd.stop)
        with self.assertRaises(AssertionError):  # not there yet
            slapd.add_popmap("jane", mailhost="store1", port="143")
        slapd.add_config(schema_ldif())
        slapd.add_popmap("jane", mailhost="store1", port="143")
        self.assertIn("mailhost: store1", slapd.search(MAILBOX, "(uid=jane)"))


# ---------------------------------------------------------------------------
# The module in the daemon.

STORE1_USERS = {"demo1": "demo", "alice": "alice-pw", "vip": "vip-pw"}
STORE2_USERS = {"demo2": "demo", "alice": "alice-pw", "carol.real": "carol-pw"}


def message(subject):
    return ("From: test@example.invalid\r\nSubject: %s\r\n\r\n%s\r\n"
            % (subject, subject)).encode("utf-8")


def inbox_subjects(port, user, password):
    """Log in with a raw client, return the Subject lines of the INBOX messages."""
    with LineClient(HOST, port) as c:
        assert c.readline().startswith(b"* OK")
        _, tagged = c.command("a", b"LOGIN " + imap_quote(user) + b" " + imap_quote(password))
        assert tagged.startswith(b"a OK"), tagged
        _, tagged = c.command("b", "SELECT INBOX")
        assert tagged.startswith(b"b OK"), tagged
        untagged, tagged = c.command("c", "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert tagged.startswith(b"c OK"), tagged
        c.command("d", "LOGOUT")
        return sorted(m.group(1).decode() for m in
                      (re.search(rb"Subject: ([^\r\n]*)", u) for u in untagged) if m)


def login_reply(port, user, password, literal=False):
    """The tagged reply to one LOGIN (quoted strings, or literals for the user name)."""
    if isinstance(user, str):
        user = user.encode("utf-8")
    with LineClient(HOST, port) as c:
        assert c.readline().startswith(b"* OK")
        if not literal:
            _, tagged = c.command("a", b"LOGIN " + imap_quote(user) + b" "
                                  + imap_quote(password))
            return tagged
        c.send(b"a LOGIN {%d}\r\n" % len(user))
        cont = c.readline()
        if not cont.startswith(b"+"):
            return cont
        c.send(user + b" " + imap_quote(password) + b"\r\n")
        _, tagged = c.read_until_tagged("a")
        return tagged


class LdapProxyTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.make_workdir("switchyard-ldap-proxy-")
        try:
            cls._start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _start(cls):
        module_path()
        cls.binary = harness.require_file(harness.switchyard_binary(), "the switchyard binary")
        cls.store1 = Dovecot("store1", os.path.join(cls.tmp, "store1"), users=STORE1_USERS)
        cls.store2 = Dovecot("store2", os.path.join(cls.tmp, "store2"), users=STORE2_USERS)
        for store, users in ((cls.store1, STORE1_USERS), (cls.store2, STORE2_USERS)):
            for user in users:
                store.add_message(user, message("%s on %s" % (user, store.name)))
        pki = os.path.join(cls.tmp, "pki")
        cls.ca = harness.make_ca(pki)
        cls.slapd = Slapd(os.path.join(cls.tmp, "slapd"),
                          tls=harness.make_cert(pki, "ldap", cls.ca))
        s = cls.slapd
        s.add_popmap("demo1", mailhost="store1")                                # a back end
        s.add_popmap("demo2", mailhost="127.0.0.1", port=str(cls.store2.imap_port))
        s.add_popmap("alice", mailhost="store2")
        s.add_popmap("carol", username="carol.real", mailhost="store2")        # rewriting
        s.add_popmap("vip", mailhost="store1", base=PRIVATE)                   # bound map only
        cls.backends = (backend_section("store1", cls.store1.imap_port)
                        + backend_section("store2", cls.store2.imap_port))
        # The bound map sends its password over StartTLS; the anonymous one goes plain.
        cls.private_options = s.map_options(
            base=PRIVATE, extensions="x-starttls,x-cacert=%s,%s" % (cls.ca[0], READER_EXT))
        cls.public_options = s.map_options()
        cls.port = harness.free_port()
        cls.proxy = Switchyard(cls.binary, os.path.join(cls.tmp, "switchyard"), switchyard_config(
            cls.port, maps=[("ldap", cls.private_options), ("ldap", cls.public_options)],
            backends=cls.backends, workers=1))

    @classmethod
    def tearDownClass(cls):
        for name in ("proxy", "slapd", "store1", "store2"):
            server = getattr(cls, name, None)
            if server is not None:
                server.stop()
        if not os.environ.get("SWITCHYARD_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.assertTrue(self.proxy.running(), self.proxy.describe())

    def test_logins_are_routed_by_the_directory(self):
        self.assertEqual(inbox_subjects(self.port, "demo1", "demo"), ["demo1 on store1"])
        self.assertEqual(inbox_subjects(self.port, "demo2", "demo"), ["demo2 on store2"])
        self.assertEqual(inbox_subjects(self.port, "alice", "alice-pw"), ["alice on store2"])

    def test_username_attribute_is_the_store_login(self):
        self.assertEqual(inbox_subjects(self.port, "carol", "carol-pw"),
                         ["carol.real on store2"])

    def test_bound_map_finds_what_anonymous_cannot(self):
        self.assertEqual(inbox_subjects(self.port, "vip", "vip-pw"), ["vip on store1"])
        self.assertNotIn(READER_PW, self.proxy.log_text())
        log = self.slapd.log_text()
        conn = re.findall(r'conn=(\d+) op=\d+ BIND dn="%s" mech=SIMPLE' % READER_DN, log)[-1]
        self.assertRegex(log, r"conn=%s op=\d+ STARTTLS" % conn)

    def test_unknown_user(self):
        self.assertTrue(login_reply(self.port, "nobody", "x").startswith(
            b"a NO [AUTHENTICATIONFAILED]"))

    def test_injection_attempts_are_unknown_users(self):
        names = [("*", False), (")(uid=*", False), ("*)(|(uid=*", False), ("\\", False),
                 ('"', False), ("'; DROP", False), ("demo1)(uid=*", False), ("demo*", False),
                 (b"\0", True), (b"nobody\0demo1", True), (b"demo1\r\n", True),
                 (b"a\r\nb", True),
                 ("x" * 2000, True), ("\u00e9*", False)]
        for name, literal in names:
            reply = login_reply(self.port, name, "demo", literal)
            self.assertTrue(reply.startswith(b"a NO [AUTHENTICATIONFAILED]")
                            or reply.startswith(b"a BAD"), (name, reply))
            self.assertTrue(self.proxy.running(), self.proxy.describe())
        log = self.slapd.log_text().lower()
        self.assertIn(r'filter="(uid=\2a)"', log)
        self.assertIn(r'filter="(uid=demo1\29\28uid=\2a)"', log)
        # ...and the proxy still serves.
        self.assertEqual(inbox_subjects(self.port, "demo1", "demo"), ["demo1 on store1"])

    def test_nul_in_a_login_name_is_refused(self):
        # A literal may carry a NUL, and a C-string key would be cut there: "demo1\0junk"
        # must not be looked up (and logged in) as demo1.
        for name in (b"demo1\0junk", b"demo1\0"):
            reply = login_reply(self.port, name, "demo", literal=True)
            self.assertTrue(reply.startswith(b"a NO [AUTHENTICATIONFAILED]")
                            or reply.startswith(b"a BAD"), (name, reply))

    def test_wrong_bind_password_is_a_temporary_failure(self):
        wrong = self.slapd.map_options(
            base=PRIVATE, extensions="bindname=%s,x-bindpw=Not-The-Pw"
            % READER_DN.replace(",", "%2C"))
        port = harness.free_port()
        proxy = Switchyard(self.binary, os.path.join(self.tmp, "switchyard-wrongpw"),
                           switchyard_config(port, maps=[("ldap", wrong)],
                                             backends=self.backends))
        self.addCleanup(proxy.stop)
        for user in ("vip", "nobody"):
            reply = login_reply(port, user, "vip-pw")
            self.assertTrue(reply.startswith(b"a NO [UNAVAILABLE]"), (user, reply))
        log = proxy.log_text()
        self.assertIn("Invalid credentials", log)
        self.assertNotIn("Not-The-Pw", log)


class LdapOutageTest(unittest.TestCase):
    """The directory goes away under a running Switchyard and comes back on the same port."""

    def test_outage_and_recovery(self):
        tmp = harness.make_workdir("switchyard-ldap-outage-")
        self.addCleanup(shutil.rmtree, tmp, True)
        binary = harness.require_file(harness.switchyard_binary(), "the switchyard binary")
        mapper = harness.require_file(os.path.join(harness.build_dir(), "switchyard-map"),
                                      "switchyard-map")
        module_path()
        store = Dovecot("store1", os.path.join(tmp, "store1"), users={"demo1": "demo"})
        self.addCleanup(store.stop)
        store.add_message("demo1", message("demo1 on store1"))
        pki = os.path.join(tmp, "pki")
        ca = harness.make_ca(pki)
        slapd = Slapd(os.path.join(tmp, "slapd"), tls=harness.make_cert(pki, "ldap", ca))
        self.addCleanup(slapd.stop)
        slapd.add_popmap("demo1", mailhost="store1")
        port = harness.free_port()
        # StartTLS: the worker reconnects after the outage as nobody, rereading the CA file.
        config = switchyard_config(port, maps=[("ldap", slapd.map_options(
            extensions="x-starttls,x-cacert=%s,x-timeout=2" % ca[0]))],
            backends=backend_section("store1", store.imap_port),
            workers=1, extra="[lookup]\ncache_size = 0\n\n")
        proxy = Switchyard(binary, os.path.join(tmp, "switchyard"), config)
        self.addCleanup(proxy.stop)

        def ask(*keys):
            return subprocess.run([mapper, "-c", proxy.conf_path] + list(keys),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=30)

        self.assertEqual(inbox_subjects(port, "demo1", "demo"), ["demo1 on store1"])
        self.assertEqual(ask("demo1").returncode, 0)
        self.assertEqual(ask("nobody").returncode, 1)
        self.assertEqual(ask("demo1", "nobody").returncode, 1)

        slapd.stop()
        for user in ("demo1", "nobody"):
            reply = login_reply(port, user, "demo")
            self.assertTrue(reply.startswith(b"a NO [UNAVAILABLE]"), (user, reply))
        result = ask("demo1")
        self.assertEqual(result.returncode, 2, result.stdout)
        self.assertIn("Can't contact LDAP server", result.stdout)
        self.assertEqual(ask("nobody").returncode, 2)

        slapd.start()  # same port, same data; Switchyard is not restarted
        self.assertEqual(inbox_subjects(port, "demo1", "demo"), ["demo1 on store1"])
        self.assertEqual(ask("demo1").returncode, 0)
        self.assertTrue(login_reply(port, "nobody", "demo").startswith(
            b"a NO [AUTHENTICATIONFAILED]"))
        self.assertTrue(proxy.running(), proxy.describe())


if __name__ == "__main__":
    unittest.main()
