"""The soak (tests/soak/soak.py) in its smoke mode: 30 seconds of mixed IMAP, POP3 and LMTP
traffic through two workers to two real Dovecots while every kind of fault is injected once
(worker SIGKILL, SIGHUP reload, a store stopped and continued, clients that stall or drop in
the middle of a command).  It passes when no failure is left unexplained by a fault, every
accepted message is in the stores exactly once (and nothing cut off is), and the master's
and workers' RSS and descriptors do not grow.  The full run: tests/soak/soak.py (10 min).
"""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

SOAK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "soak",
                    "soak.py")


class SoakSmokeTest(unittest.TestCase):
    def test_soak_smoke_run_has_no_violation(self):
        harness.require_file(harness.switchyard_binary(), "the switchyard binary")
        r = subprocess.run([sys.executable, SOAK, "--smoke"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           errors="replace", timeout=150, env=dict(os.environ))
        self.assertEqual(r.returncode, 0, r.stdout[-6000:])
        self.assertIn("SOAK PASSED", r.stdout)
        self.assertRegex(r.stdout, r"failures NOT explained: 0\n")
        # Every kind of fault was injected.
        for kind in ("worker-kill", "reload", "store-stop", "client-stall", "client-drop"):
            self.assertRegex(r.stdout, r"faults injected: .*%s x\d" % kind, r.stdout[-3000:])


if __name__ == "__main__":
    unittest.main()
