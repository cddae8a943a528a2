"""Runs the integration suite (unittest discovery of test_*.py here), as
`python3 -m unittest discover -v` would, and then says how long each file took, slowest
first, so that a slow CI pass can be traced to its files.

    python3 run_suite.py
"""

import os
import sys
import time
import unittest


class TimedResult(unittest.TextTestResult):
    """Adds to each file the wall time since the previous test ended, so that a class's
    set-up (the servers it starts) counts for its file."""

    by_file = {}
    last_stop = time.monotonic()

    def stopTest(self, test):
        super().stopTest(test)
        now = time.monotonic()
        module = type(test).__module__.rsplit(".", 1)[-1]
        TimedResult.by_file[module] = (TimedResult.by_file.get(module, 0.0)
                                       + now - TimedResult.last_stop)
        TimedResult.last_stop = now


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    suite = unittest.defaultTestLoader.discover(here, pattern="test_*.py", top_level_dir=here)
    started = TimedResult.last_stop = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2, resultclass=TimedResult).run(suite)
    print("\nwall time by file (%.0f s in all):" % (time.monotonic() - started), file=sys.stderr)
    for module, secs in sorted(TimedResult.by_file.items(), key=lambda kv: -kv[1]):
        print("  %7.1f s  %s" % (secs, module), file=sys.stderr)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
