"""A real OpenLDAP slapd on loopback for the LDAP map tests.

Slapd(workdir) writes a cn=config of its own with slapadd (core, cosine, inetorgperson and
our schema/perdition.ldif; an mdb database for dc=example,dc=com) and runs
`slapd -d LEVEL -F CONFIG -h URLS`: -d keeps it in the foreground, so the PID we hold is
slapd's own and stop() ends it by that PID.  Every wait is a bounded poll.

The directory:
  dc=example,dc=com                   rootdn cn=admin,dc=example,dc=com / "secret"
  cn=reader,dc=example,dc=com         a read-only account, password "reader-pw"
  ou=mailbox,dc=example,dc=com        readable by anyone (anonymous included)
  ou=private,dc=example,dc=com        its entries readable by cn=reader only
olcAllows: bind_v2 (Perdition's own LDAP module binds with LDAP version 2).
cn=config itself is writable as cn=config / "config-secret" (add_config).
with_schema=False leaves schema/perdition.ldif out, for loading it with ldapadd.

It listens on ldap://127.0.0.1:PORT/ and on a unix socket (ldapi_url); tls=(cert_path,
key_path) adds StartTLS on those and an ldaps:// port.

Needs the Debian packages slapd (slapd, slapadd, slaptest) and ldap-utils (ldapadd,
ldapmodify, ldapsearch).
"""

import base64
import os
import shutil
import signal
import subprocess

import harness

SUFFIX = "dc=example,dc=com"
ROOT_DN = "cn=admin," + SUFFIX
ROOT_PW = "secret"
CONFIG_DN = "cn=config"              # the rootdn of the cn=config database
CONFIG_PW = "config-secret"
READER_DN = "cn=reader," + SUFFIX
READER_PW = "reader-pw"
MAILBOX = "ou=mailbox," + SUFFIX
PRIVATE = "ou=private," + SUFFIX

SYSTEM_SCHEMA_DIR = "/etc/ldap/schema"


def schema_ldif():
    """Our schema/perdition.ldif in the source tree."""
    root = os.environ.get("abs_top_srcdir") or harness.SOURCE_ROOT
    return os.path.join(root, "schema", "perdition.ldif")


def _find(program):
    search = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/local/sbin"
    found = shutil.which(program, path=search)
    if not found:
        raise AssertionError("%s not found (Debian: apt-get install slapd ldap-utils)" % program)
    return found


def client_env(ca_file=None):
    """Environment for ldapsearch & co: no ldap.conf/.ldaprc, our CA when given."""
    env = dict(os.environ)
    env["LDAPNOINIT"] = "1"
    if ca_file:
        env["LDAPTLS_CACERT"] = ca_file
        env["LDAPTLS_REQCERT"] = "demand"
    return env


class Slapd:
    """One slapd with its own configuration and database in `workdir`."""

    def __init__(self, workdir, tls=None, port=None, start=True, debug_level="stats",
                 with_schema=True):
        self.workdir = os.path.abspath(workdir)
        self.with_schema = with_schema
        os.makedirs(self.workdir, exist_ok=True)
        self.tls = tls
        self.port = port or harness.free_port()
        self.ldaps_port = harness.free_port() if tls else None
        self.debug_level = debug_level
        self.config_dir = os.path.join(self.workdir, "slapd.d")
        self.db_dir = os.path.join(self.workdir, "db")
        self.log_path = os.path.join(self.workdir, "slapd.log")
        self.socket_path = os.path.join(self.workdir, "ldapi")
        self.process = None
        self._configure()
        if start:
            self.start()

    # -- addresses ------------------------------------------------------------

    @property
    def url(self):
        return "ldap://127.0.0.1:%d" % self.port

    @property
    def ldapi_url(self):
        return "ldapi://" + self.socket_path.replace("/", "%2F")

    @property
    def ldaps_url(self):
        return "ldaps://127.0.0.1:%d" % self.ldaps_port if self.ldaps_port else None

    def map_options(self, base=MAILBOX, attributes="username,mailhost,port", scope="one",
                    filter="(uid=%s)", extensions="", version=None, scheme_host=None):
        """Module options for this server: [version:]URL?attributes?scope?filter[?ext]."""
        text = "%s/%s?%s?%s?%s" % (scheme_host or self.url, base, attributes, scope, filter)
        if extensions:
            text += "?" + extensions
        return ("%d:" % version if version else "") + text

    # -- configuration ----------------------------------------------------------

    def _config_ldif(self):
        w = self.workdir
        tls = ""
        if self.tls:
            cert, key = self.tls[0], self.tls[1]
            tls = ("olcTLSCertificateFile: %s\nolcTLSCertificateKeyFile: %s\n"
                   "olcTLSProtocolMin: 3.3\n" % (cert, key))
        schemas = "".join("include: file://%s/%s.ldif\n\n" % (SYSTEM_SCHEMA_DIR, name)
                          for name in ("core", "cosine", "inetorgperson"))
        if self.with_schema:
            schemas += "include: file://%s\n\n" % harness.require_file(
                schema_ldif(), "schema/perdition.ldif")
        return """\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {w}/slapd.pid
olcArgsFile: {w}/slapd.args
olcAllows: bind_v2
olcLogLevel: stats
{tls}
dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{schemas}\
dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcSizeLimit: 500

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcRootPW: {config_pw}
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcDbDirectory: {w}/db
olcSuffix: {suffix}
olcRootDN: {root_dn}
olcRootPW: {root_pw}
olcDbMaxSize: 33554432
olcDbIndex: objectClass eq
olcDbIndex: uid eq
olcAccess: {{0}}to attrs=userPassword by anonymous auth by * none
olcAccess: {{1}}to dn.children="{private}" by dn.exact="{reader}" read by * none
olcAccess: {{2}}to * by * read
""".format(w=w, tls=tls, schemas=schemas, suffix=SUFFIX, root_dn=ROOT_DN, root_pw=ROOT_PW,
           private=PRIVATE, reader=READER_DN, config_pw=CONFIG_PW)

    def _base_ldif(self):
        return """\
dn: {suffix}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: {reader}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: reader
userPassword: {reader_pw}

dn: {mailbox}
objectClass: organizationalUnit
ou: mailbox

dn: {private}
objectClass: organizationalUnit
ou: private
""".format(suffix=SUFFIX, reader=READER_DN, reader_pw=READER_PW, mailbox=MAILBOX,
           private=PRIVATE)

    def _slapadd(self, db_number, ldif_text):
        path = os.path.join(self.workdir, "slapadd-%d.ldif" % db_number)
        with open(path, "w", encoding="utf-8") as f:
            f.write(ldif_text)
        result = subprocess.run([_find("slapadd"), "-n%d" % db_number, "-F", self.config_dir,
                                 "-l", path], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", timeout=60)
        if result.returncode != 0:
            raise AssertionError("slapadd -n%d failed (%d):\n%s\n--- %s ---\n%s"
                                 % (db_number, result.returncode, result.stdout, path,
                                    ldif_text))

    def _configure(self):
        os.makedirs(self.config_dir)
        os.makedirs(self.db_dir)
        self._slapadd(0, self._config_ldif())
        self._slapadd(1, self._base_ldif())

    # -- process ----------------------------------------------------------------

    def log_text(self):
        return harness._read_text(self.log_path)

    def describe(self):
        return "--- %s ---\n%s" % (self.log_path, self.log_text()[-6000:])

    def running(self):
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def start(self, timeout=15.0):
        """Start (or restart, on the same ports and data) and wait until it answers."""
        if self.running():
            return
        urls = "ldap://127.0.0.1:%d/ %s/" % (self.port, self.ldapi_url)
        if self.ldaps_port:
            urls += " ldaps://127.0.0.1:%d/" % self.ldaps_port
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [_find("slapd"), "-d", self.debug_level, "-h", urls, "-F", self.config_dir],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.workdir, start_new_session=True)
        finally:
            log.close()
        harness._LIVE.add(self)
        try:
            harness.wait_port("127.0.0.1", self.port, timeout, self.process, self.describe)
            harness.wait_until(self._answers, timeout, "slapd on port %d answering" % self.port)
        except Exception:
            self.stop()
            raise

    def _answers(self):
        if self.process.poll() is not None:
            raise AssertionError("slapd exited with %s\n%s"
                                 % (self.process.returncode, self.describe()))
        result = subprocess.run([_find("ldapsearch"), "-x", "-LLL", "-H", self.url,
                                 "-o", "nettimeout=2", "-l", "2", "-b", SUFFIX, "-s", "base",
                                 "dn"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=client_env(), timeout=10)
        return result.returncode == 0

    def stop(self, timeout=10.0):
        """SIGTERM by PID, bounded wait, SIGKILL if needed."""
        harness._LIVE.discard(self)
        if self.process is not None:
            return harness._terminate(self.process, timeout)
        return None

    def kill(self):
        """SIGKILL by PID: a crash, no goodbye to the clients."""
        harness._LIVE.discard(self)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10.0)

    # -- data -------------------------------------------------------------------

    def _client(self, program, ldif_text, extra=(), bind=(ROOT_DN, ROOT_PW)):
        result = subprocess.run([_find(program), "-x", "-H", self.url, "-D", bind[0],
                                 "-w", bind[1]] + list(extra),
                                input=ldif_text, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                env=client_env(), timeout=30)
        if result.returncode != 0:
            raise AssertionError("%s failed (%d):\n%s\n--- input ---\n%s"
                                 % (program, result.returncode, result.stdout, ldif_text))
        return result.stdout

    def add_entries(self, ldif_text):
        """ldapadd as the rootdn; raises with ldapadd's output on failure."""
        return self._client("ldapadd", ldif_text)

    def add_config(self, ldif_path):
        """ldapadd of an LDIF file into cn=config (e.g. schema/perdition.ldif)."""
        return self._client("ldapadd", "", ["-f", ldif_path], bind=(CONFIG_DN, CONFIG_PW))

    def modify(self, ldif_text):
        """ldapmodify as the rootdn (changetype records)."""
        return self._client("ldapmodify", ldif_text)

    def add_popmap(self, uid, username=None, mailhost=None, port=None, base=MAILBOX,
                   rdn=None, extra=""):
        """A perditionPopmap + uidObject entry (DN `rdn`,BASE; default uid=UID,BASE).

        username/mailhost/port: a value, a list of values, or None for none.  Values that
        LDIF cannot hold as they are (UTF-8, a leading space...) are sent base64-encoded.
        """
        lines = ["dn: %s,%s" % (rdn or "uid=" + uid, base), "objectClass: perditionPopmap",
                 "objectClass: uidObject", ldif_value("uid", uid)]
        for name, value in (("username", username), ("mailhost", mailhost), ("port", port)):
            for v in ([] if value is None else value if isinstance(value, list) else [value]):
                lines.append(ldif_value(name, v))
        return self.add_entries("\n".join(lines) + "\n" + extra + "\n")

    def search(self, base, filter="(objectClass=*)", *attributes):
        """ldapsearch -LLL as the rootdn; returns its output."""
        return self._client("ldapsearch", "", ["-LLL", "-b", base, filter] + list(attributes))


def ldif_value(name, value):
    """`name: value`, or `name:: base64` when LDIF needs it (non-ASCII, leading space...)."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    safe = (raw and all(0x20 <= b < 0x7f for b in raw) and raw[:1] not in (b" ", b":", b"<")
            and not raw.endswith(b" "))
    if safe:
        return "%s: %s" % (name, raw.decode("ascii"))
    return "%s:: %s" % (name, base64.b64encode(raw).decode("ascii"))


__all__ = ["Slapd", "SUFFIX", "ROOT_DN", "ROOT_PW", "CONFIG_DN", "CONFIG_PW", "READER_DN",
           "READER_PW", "MAILBOX", "PRIVATE", "ldif_value", "client_env", "schema_ldif"]
