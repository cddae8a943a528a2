"""A real PostgreSQL for the integration tests, in a directory of its own.

Postgres(workdir) runs initdb into workdir/data, starts `postgres` in the foreground (so its
PID is ours; as the OS user "postgres" when we are root, since PostgreSQL refuses to run as
root), listening on 127.0.0.1:PORT and on a Unix socket in workdir, and creates what the pgsql
map reads: the role `perdition` (password `password`, scram-sha-256 over TCP), the database
`dbperdition` and the table of schema/pgsql.sql ("tblperdition"), readable by perdition.

Every wait is bounded (pg_isready polls); stop() is a fast shutdown (SIGINT) by PID, start()
restarts on the same port.  Needs the Debian packages postgresql (server binaries) and
postgresql-client (psql, pg_isready).  The binaries are found in $PG_BINDIR, then
`pg_config --bindir`, then /usr/lib/postgresql/<newest>/bin.
"""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import time

import harness

SUPERUSER = "postgres"


def pg_bindir():
    def usable(d):
        return d and os.path.exists(os.path.join(d, "initdb"))
    explicit = os.environ.get("PG_BINDIR")
    if usable(explicit):
        return explicit
    if shutil.which("pg_config"):
        try:
            d = subprocess.run(["pg_config", "--bindir"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, timeout=10).stdout.strip()
            if usable(d):
                return d
        except (OSError, subprocess.SubprocessError):
            pass

    def major(d):
        try:
            return float(os.path.basename(os.path.dirname(d)))
        except ValueError:
            return 0.0
    found = sorted((d for d in glob.glob("/usr/lib/postgresql/*/bin") if usable(d)), key=major)
    if found:
        return found[-1]
    raise AssertionError("PostgreSQL server binaries (initdb, postgres) not found: "
                         "apt-get install postgresql, or set PG_BINDIR")


def source_root():
    return os.environ.get("abs_top_srcdir") or harness.SOURCE_ROOT


class Postgres:
    """One PostgreSQL cluster in `workdir`, started (and set up) by the constructor."""

    def __init__(self, workdir, password="secret", port=None, start=True):
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        self.data = os.path.join(self.workdir, "data")
        self.log_path = os.path.join(self.workdir, "postgres.log")
        self.password = password
        self.port = port or harness.free_port()
        self.bindir = pg_bindir()
        self.process = None
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")  # created by the Debian package
            self.uid, self.gid = account.pw_uid, account.pw_gid
            os.chown(self.workdir, self.uid, self.gid)
        else:
            self.uid = self.gid = None
        self._initdb()
        if start:
            self.start()
            self._create_map_database()

    # -- process ------------------------------------------------------------

    def _run_as_server_user(self):
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def _initdb(self):
        with open(self.log_path, "ab") as log:
            subprocess.run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-N",
                            "-U", SUPERUSER, "-E", "UTF8", "--locale=C", "-A", "trust",
                            "--no-instructions"],
                           stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                           cwd=self.workdir, check=True, timeout=120,
                           **self._run_as_server_user())
        # Unix socket: the superuser, trusted (the tests' own setup); TCP: passwords.
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write("local all all trust\n"
                    "host all all 127.0.0.1/32 scram-sha-256\n")

    def start(self):
        if self.running():
            return
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [os.path.join(self.bindir, "postgres"), "-D", self.data, "-p", str(self.port),
                 "-k", self.workdir, "-c", "listen_addresses=127.0.0.1",
                 "-c", "fsync=off", "-c", "full_page_writes=off",
                 "-c", "synchronous_commit=off"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.workdir, start_new_session=True, **self._run_as_server_user())
        finally:
            log.close()
        harness._LIVE.add(self)
        try:
            self._wait_ready(30.0)
        except Exception:
            self.stop()
            raise

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        isready = os.path.join(self.bindir, "pg_isready")
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("postgres %d exited with status %s before it was ready\n%s"
                                   % (self.process.pid, self.process.returncode, self.describe()))
            r = subprocess.run([isready, "-q", "-h", self.workdir, "-p", str(self.port),
                                "-U", SUPERUSER, "-d", "postgres", "-t", "2"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=10)
            if r.returncode == 0:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError("postgres did not accept connections within %.1fs\n%s"
                                   % (timeout, self.describe()))
            time.sleep(harness.POLL_INTERVAL)

    def running(self):
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def stop(self, timeout=20.0):
        """Fast shutdown: SIGINT by PID (sessions are ended), bounded wait, then SIGKILL."""
        harness._LIVE.discard(self)
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)

    def restart(self):
        """Stop and start again on the same port and data."""
        self.stop()
        self.start()

    # -- SQL ----------------------------------------------------------------

    def sql(self, text, db="dbperdition"):
        """Run `text` (one or more statements) with psql as the superuser; return stdout.

        Unaligned, tuples only: one row per line, columns separated by '|'.
        """
        r = subprocess.run([os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t",
                            "-v", "ON_ERROR_STOP=1", "-h", self.workdir, "-p", str(self.port),
                            "-U", SUPERUSER, "-d", db, "-f", "-"],
                           input=text, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError("psql failed (%d): %s\n--- SQL ---\n%s"
                                 % (r.returncode, r.stderr, text))
        return r.stdout.strip()

    def _create_map_database(self):
        self.sql("CREATE ROLE perdition LOGIN PASSWORD %s;" % sql_literal(self.password),
                 db="postgres")
        self.sql("CREATE DATABASE dbperdition;", db="postgres")
        with open(os.path.join(source_root(), "schema", "pgsql.sql"), encoding="utf-8") as f:
            self.sql(f.read())
        self.sql('GRANT SELECT ON "tblperdition" TO perdition;')

    def nine_fields(self, table="tblperdition", columns="servername:user:port"):
        """Perdition-style options for this server."""
        return "127.0.0.1:%d:dbperdition:%s:perdition:%s:%s" % (self.port, table, self.password,
                                                                columns)

    def uri(self, settings=""):
        """A postgresql:// URI for this server followed by `settings` (e.g. ";query=...")."""
        return "postgresql://perdition:%s@127.0.0.1:%d/dbperdition%s" % (self.password,
                                                                         self.port, settings)

    # -- diagnostics --------------------------------------------------------

    def log_text(self):
        return harness._read_text(self.log_path)

    def describe(self):
        return "--- %s ---\n%s" % (self.log_path, self.log_text()[-6000:])


def sql_literal(value):
    """A standard-conforming SQL string literal."""
    return "'" + value.replace("'", "''") + "'"
