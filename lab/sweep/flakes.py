"""Run the suite N times and report every test whose result changed (``scripts/flakes``).

    python -m lab.sweep.flakes N [PYTEST ARGS...]

Each run writes a JUnit XML file; a test is flaky when its outcome (passed,
failed, error, skipped) is not the same in every run. Exit 0 when all runs
agree, 1 otherwise, 2 on bad usage.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path


def outcomes(junit: Path) -> dict[str, str]:
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        out[name] = ("failed" if "failure" in kinds else "error" if "error" in kinds
                     else "skipped" if "skipped" in kinds else "passed")
    return out


def main(argv: list[str]) -> int:
    if not argv or not argv[0].isdigit() or int(argv[0]) < 2:
        print("usage: python -m lab.sweep.flakes N [PYTEST ARGS...]  (N >= 2)", file=sys.stderr)
        return 2
    n, args = int(argv[0]), argv[1:]
    runs: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="drlab-flakes-") as tmp:
        for i in range(1, n + 1):
            junit = Path(tmp, f"run{i}.xml")
            t0 = time.monotonic()
            p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                f"--junitxml={junit}", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            last = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else "(no output)"
            print(f"run {i}/{n}: exit {p.returncode} in {time.monotonic() - t0:.0f}s: {last}",
                  flush=True)
            if not junit.exists():
                print(p.stdout[-3000:])
                return 1
            runs.append(outcomes(junit))
    seen: dict[str, list[str]] = defaultdict(list)
    for r in runs:
        for name in set().union(*runs):
            seen[name].append(r.get(name, "absent"))
    flaky = {k: v for k, v in seen.items() if len(set(v)) > 1}
    failing = {k: v for k, v in seen.items() if k not in flaky and v[0] in ("failed", "error")}
    print(f"{len(seen)} tests, {n} runs: {len(flaky)} changed result, "
          f"{len(failing)} failed every time")
    for name, v in sorted(flaky.items()):
        print(f"  FLAKY {name}: {' '.join(v)}")
    for name in sorted(failing):
        print(f"  FAILED {name}")
    return 1 if flaky or failing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
