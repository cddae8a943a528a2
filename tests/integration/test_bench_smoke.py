"""The benchmark harness keeps working: bench/run.py --smoke runs every peer (direct Dovecot,
Switchyard, nginx mail, Perdition) and every mode (IMAP and POP3 logins, bulk, imaps bulk,
idle sessions, LMTP delivery, lookups through a fixed-latency map, a SIGSTOPped slapd) once
with tiny counts, and its report has a row without errors for each. No figure is judged:
the smoke run's timings mean nothing.

Needs what the benchmark needs (scripts/deps): Dovecot, nginx with libnginx-mod-mail,
perdition, slapd and ldap-utils, g++ and libssl-dev for bench/imap-load.
"""

import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

SRCDIR = os.environ.get("abs_top_srcdir") or harness.SOURCE_ROOT
RUN_PY = os.path.join(SRCDIR, "bench", "run.py")

# Section title prefix -> the first cells (peer or condition) of the rows it must have.
EXPECTED = {
    "## IMAP logins": ["direct Dovecot", "Switchyard workers=2", "nginx mail", "Perdition"],
    "## POP3 logins": ["direct Dovecot", "Switchyard workers=2", "nginx mail", "Perdition"],
    "## Bulk": ["direct Dovecot", "Switchyard workers=2", "nginx mail", "Perdition"],
    "## imaps bulk": ["direct Dovecot", "Switchyard workers=2", "nginx mail"],
    "## LMTP delivery": ["direct Dovecot", "Switchyard workers=2"],
    "## Idle sessions": ["direct Dovecot", "Switchyard workers=2", "nginx mail", "Perdition"],
    "## Lookups through a map": ["1 ms", "1 ms", "20 ms", "20 ms"],
    "## A SIGSTOPped directory": ["slapd answering", "slapd SIGSTOPped"],
}


def tables(report):
    """{section title: (header cells, [row cells])} of the report's Markdown tables."""
    out = {}
    title = None
    for line in report.splitlines():
        if line.startswith("## "):
            title = line.strip()
            continue
        if title and line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if title not in out:
                out[title] = (cells, [])
            elif not set(line.replace("|", "").strip()) <= set("-: "):
                out[title][1].append(cells)
    return out


class BenchSmokeTest(unittest.TestCase):
    def test_every_scenario_runs_and_reports(self):
        harness.require_file(RUN_PY, "bench/run.py")
        with tempfile.TemporaryDirectory(prefix="switchyard-bench-smoke-") as tmp:
            output = os.path.join(tmp, "report.md")
            result = subprocess.run(
                [sys.executable, RUN_PY, "--smoke", "--output", output],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, errors="replace", timeout=300)
            log = result.stdout[-6000:]
            self.assertEqual(result.returncode, 0, log)
            with open(output, encoding="utf-8") as f:
                report = f.read()
        self.assertNotIn("run failed", report, report)
        found = tables(report)
        for prefix, peers in EXPECTED.items():
            titles = [t for t in found if t.startswith(prefix)]
            self.assertEqual(len(titles), 1, (prefix, list(found), log))
            header, rows = found[titles[0]]
            self.assertEqual(len(rows), len(peers), (prefix, rows))
            for row, peer in zip(rows, peers):
                self.assertTrue(row[0].startswith(peer), (prefix, row, peers))
            errors = header.index("errors")
            for row in rows:
                self.assertEqual(row[errors], "0", (prefix, row))
            # A rate or a size per row: a scenario that moved nothing is broken.
            for name in ("logins/s", "MB/s", "messages/s", "sessions"):
                if name in header:
                    col = header.index(name)
                    for row in rows:
                        self.assertGreater(float(row[col]), 0, (prefix, name, row))
        # The logins left waiting on the stopped slapd were all answered after SIGCONT.
        _, rows = found[[t for t in found if t.startswith("## A SIGSTOPped")][0]]
        m = re.match(r"(\d+) waiting on slapd: (.*)", rows[1][-1])
        self.assertIsNotNone(m, rows)
        answered = sum(int(n) for n in re.findall(r"(\d+) OK", m.group(2)))
        self.assertEqual(answered, int(m.group(1)), rows)


if __name__ == "__main__":
    unittest.main()
