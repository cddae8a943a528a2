#!/usr/bin/env python3
"""Switchyard demo: two real Dovecot stores behind one Switchyard, on this machine only.

    python3 scripts/demo.py            (from the build tree, after "make")

It builds everything afresh in /tmp/switchyard-demo:
  store1  Dovecot, IMAP 10143, POP3 10110, LMTP 10024
  store2  Dovecot, IMAP 11143, POP3 11110, LMTP 11024
  users.db   SQLite map: demo1, demo3 -> store1; demo2, demo4 -> store2
  switchyard IMAP on 127.0.0.1:1143, run in the foreground with its log on this terminal.
Every demo user exists on both stores with password "demo"; each store's copy of the mailbox
says which store it is, so what you see through the proxy shows where the map sent you.
Ctrl-C (or SIGTERM) stops Switchyard and both stores, each by its own PID.

Environment: abs_top_builddir (default: this source tree) locates switchyard and maps/.libs.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests", "integration"))

import harness  # noqa: E402

USERS = ("demo1", "demo2", "demo3", "demo4")
HOME_STORE = {"demo1": "store1", "demo3": "store1", "demo2": "store2", "demo4": "store2"}
STORE_PORTS = {"store1": (10143, 10110, 10024), "store2": (11143, 11110, 11024)}


def welcome(user, store):
    return ("From: Switchyard demo <demo@example.invalid>\r\n"
            "To: %(user)s@example.invalid\r\n"
            "Subject: Welcome %(user)s - you are on %(store)s\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "\r\n"
            "Hello %(user)s,\r\n"
            "\r\n"
            "this message is stored on %(store)s.  If you read it through Switchyard on\r\n"
            "port 1143, the map sent you to %(store)s.\r\n" % {"user": user, "store": store}
            ).encode("utf-8")


def port_in_use(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def instructions(port, directory):
    return """\
Switchyard demo
===============
Two Dovecot stores run behind Switchyard on 127.0.0.1:{port}.  The SQLite map
{dir}/users.db says: demo1, demo3 -> store1; demo2, demo4 -> store2 (password: demo).

Try, in another terminal:

  curl -v imap://127.0.0.1:{port}/INBOX -u demo1:demo
      lists INBOX and its sub-folders: "INBOX.you-are-on-store1" names the store.
  curl 'imap://127.0.0.1:{port}/INBOX;UID=1' -u demo2:demo
      prints the welcome message: "Subject: Welcome demo2 - you are on store2".
  curl -v 'imap://127.0.0.1:{port}/INBOX;UID=1' -u demo2:wrong
      a wrong password: store2's "NO [AUTHENTICATIONFAILED]" comes back
      (curl: (67) Login denied).
  curl -v imap://127.0.0.1:{port}/INBOX -u nobody:demo
      a user no map knows: Switchyard refuses it itself, no store is asked.

Move a user and look again (the map is read at each login):
  sqlite3 {dir}/users.db "UPDATE tblPerdition SET servername = 'store2' WHERE user = 'demo1'"

Config: {dir}/switchyard/switchyard.conf     Store logs: {dir}/store*/dovecot.log
Switchyard's log follows here.  Ctrl-C stops everything.
""".format(port=port, dir=directory)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="/tmp/switchyard-demo",
                        help="working directory, wiped and rebuilt (default %(default)s)")
    parser.add_argument("--port", type=int, default=1143,
                        help="Switchyard's IMAP port (default %(default)s)")
    parser.add_argument("--level", default="info",
                        help="log level: debug, info, notice, warning, error")
    args = parser.parse_args()

    binary = harness.switchyard_binary()
    if not os.path.exists(binary):
        sys.exit("demo: %s not found: build first (./configure && make), or set "
                 "abs_top_builddir to the build tree" % binary)
    if not os.path.exists(os.path.join(harness.map_dir(), "sqlite.so")):
        sys.exit("demo: the sqlite map module is missing from %s: run make" % harness.map_dir())
    busy = [p for p in (args.port,) + STORE_PORTS["store1"] + STORE_PORTS["store2"]
            if port_in_use(p)]
    if busy:
        sys.exit("demo: port(s) %s already in use: is another demo running?"
                 % ", ".join(map(str, busy)))

    directory = os.path.abspath(args.dir)
    marker = os.path.join(directory, ".switchyard-demo")
    if os.path.isdir(directory) and os.listdir(directory):
        if not os.path.exists(marker):
            sys.exit("demo: %s exists and is not an earlier demo's directory: not wiping it"
                     % directory)
        shutil.rmtree(directory)
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)
    open(marker, "w").close()

    stopping = []

    def request_stop(signum, _frame):
        stopping.append(signum)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    servers = []
    try:
        stores = {}
        for store in ("store1", "store2"):
            dovecot = harness.Dovecot(store, os.path.join(directory, store),
                                      users={u: "demo" for u in USERS},
                                      ports=STORE_PORTS[store])
            servers.append(dovecot)
            stores[store] = dovecot
            for user in USERS:
                dovecot.add_message(user, welcome(user, store))
                # curl's imap://host/INBOX lists INBOX's folders: this one names the store.
                dovecot.maildir(user, "INBOX.you-are-on-" + store)

        db = harness.make_sqlite_map(os.path.join(directory, "users.db"),
                                     [(user, HOME_STORE[user]) for user in USERS])
        config = harness.switchyard_config(
            args.port, maps=[("sqlite", db)], level=args.level,
            backends="".join(harness.backend_section(store, d.imap_port)
                             for store, d in stores.items()))
        print(instructions(args.port, directory), flush=True)
        proxy = harness.Switchyard(binary, os.path.join(directory, "switchyard"), config,
                                   log_to_file=False)
        servers.append(proxy)

        while not stopping:
            try:
                proxy.process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
            else:
                print("demo: switchyard exited with status %d" % proxy.process.returncode,
                      file=sys.stderr)
                return 1
            dead = [d.name for d in stores.values() if not d.running()]
            if dead:
                print("demo: %s stopped unexpectedly; see %s/<store>/dovecot.log"
                      % (", ".join(dead), directory), file=sys.stderr)
                return 1
        print("\ndemo: stopping", file=sys.stderr)
        return 0
    finally:
        for server in reversed(servers):
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
