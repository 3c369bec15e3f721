"""Bisection over Debian kernel builds: which build changed a verdict?

The engine (:func:`bisect`) is pure: it takes the builds in order and a function
giving a build's verdict, so it is tested without booting anything. The first
build's verdict is the reference (good), the last must differ from it (bad); a
build whose verdict cannot be had (no fetch, no boot: :attr:`Verdict.SKIP`) is
passed over and its neighbours are tried. A list from a newer good build to an
older bad one finds a fix rather than a regression.
"""

from __future__ import annotations

import gzip
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cmp_to_key
from pathlib import Path
from typing import Generic, TypeVar

from lab.errors import LabError, UsageError

T = TypeVar("T")


class Verdict(Enum):
    GOOD = "good"
    BAD = "bad"
    SKIP = "skip"


@dataclass(frozen=True)
class Step(Generic[T]):
    build: T
    verdict: Verdict
    seconds: float


@dataclass
class Bisection(Generic[T]):
    #: the last good and first bad build, adjacent in the list but for skipped ones
    last_good: T
    first_bad: T
    steps: list[Step[T]] = field(default_factory=list)
    #: builds between the two that could not be judged
    skipped_between: list[T] = field(default_factory=list)

    @property
    def boots(self) -> int:
        return len(self.steps)


def bisect(builds: Sequence[T], judge: Callable[[T], Verdict],
           on_step: Callable[[Step[T]], None] | None = None) -> Bisection[T]:
    """Find the adjacent pair (last good, first bad) in ``builds`` (judged good at
    the start, bad at the end). ``judge`` runs once per build tried."""
    if len(builds) < 2:
        raise LabError("bisect: needs at least two builds (the good and the bad one)")
    steps: list[Step[T]] = []
    verdicts: dict[int, Verdict] = {}

    def try_(i: int) -> Verdict:
        t0 = time.monotonic()
        v = judge(builds[i])
        step = Step(builds[i], v, time.monotonic() - t0)
        steps.append(step)
        verdicts[i] = v
        if on_step:
            on_step(step)
        return v

    if try_(0) is not Verdict.GOOD:
        raise LabError(f"bisect: the good build {builds[0]} gave no verdict (it did not "
                       "fetch, boot or run)")
    if try_(len(builds) - 1) is not Verdict.BAD:
        raise LabError(f"bisect: the bad build {builds[-1]} gives the good build's verdict "
                       "(nothing changed between them)" if verdicts[len(builds) - 1]
                       is Verdict.GOOD else f"bisect: the bad build {builds[-1]} gave no "
                       "verdict (it did not fetch, boot or run)")
    lo, hi = 0, len(builds) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        # mid, then its neighbours outwards, until one gives a verdict
        order = sorted(range(lo + 1, hi), key=lambda i: (abs(i - mid), i))
        for i in order:
            if i in verdicts:
                continue
            v = try_(i)
            if v is Verdict.GOOD:
                lo = i
                break
            if v is Verdict.BAD:
                hi = i
                break
        else:
            break  # every build between lo and hi is skipped
    return Bisection(builds[lo], builds[hi], steps, list(builds[lo + 1:hi]))


# -- over Debian's builds, with a kernels-run verb as the verdict ------------------

@dataclass
class KernelBisection:
    bisection: Bisection[str]
    #: the range bisected (releases, from the good end to the bad one)
    builds: list[str]
    reference: str
    seconds: float
    #: the changelog items between the two uploads that may explain it
    suspects: list[Suspect] = field(default_factory=list)
    #: why there are no suspects (no changelog found), if so
    suspects_note: str | None = None
    #: per build tried: seconds to fetch, to boot (the guest's uptime when the
    #: command started), and the whole run
    timings: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        b = self.bisection
        return {"last_good": b.last_good, "first_bad": b.first_bad, "boots": b.boots,
                "builds": self.builds, "reference": self.reference,
                "skipped_between": b.skipped_between, "seconds": round(self.seconds, 1),
                "steps": [{"build": s.build, "verdict": s.verdict.value,
                           "seconds": round(s.seconds, 1), **self.timings.get(s.build, {})}
                          for s in b.steps],
                "suspects": [{"version": x.version, "text": x.text, "commits": list(x.commits)}
                             for x in self.suspects],
                "suspects_note": self.suspects_note}


def line_of(release: str) -> str:
    """The Debian release a build is made for: ``+deb13`` of ``6.12.96+deb13-amd64``
    (also ``+deb13.1``), "" for one without (``6.1.0-48-amd64``)."""
    m = re.search(r"\+deb\d+", release)
    return m.group() if m else ""


def bisect_kernels(good: str, bad: str, flavour: str, what: str, args: list[str],
                   offline: bool, logs: Path,
                   say: Callable[[str], None]) -> KernelBisection:
    """Bisect the fetchable ``flavour`` builds from ``good`` to ``bad`` (either order)
    with ``kernels run``'s verb ``what`` as the verdict."""
    # lazy: loaded only when bisect_kernels() runs (+67 modules, ~40 ms)
    from lab.sweep import kernels, kmatrix

    if what not in kmatrix.VERBS:
        raise UsageError(f"kernels bisect: {what!r} is not one of {', '.join(kmatrix.VERBS)}")
    verb: kmatrix.What = what
    kmatrix.child_command(verb, args, Path("."))  # bad arguments: before any fetch
    every = [b for b in kernels.available(refresh=not offline)
             if b.flavour == flavour and b.fetchable]
    g, b = kernels.by_name(good, every, flavour), kernels.by_name(bad, every, flavour)
    # one line of builds: those of the ends' Debian release tags (+deb13...; none for
    # 6.1.0-N), not the other releases' rebuilds of the same upstream versions
    if g == b:
        raise UsageError(f"kernels bisect: --good and --bad are the same build ({g.release})")
    lines = {line_of(g.release), line_of(b.release)}
    every = [x for x in every if line_of(x.release) in lines]
    i, j = every.index(g), every.index(b)
    span = every[i:j + 1] if i <= j else list(reversed(every[j:i + 1]))
    by_release = {x.release: x for x in span}
    say(f"bisect: {len(span)} {flavour} builds from {g.release} (good) to {b.release} "
        f"(bad); at most {math.ceil(math.log2(max(len(span), 2))) + 2} boots")
    logs.mkdir(parents=True, exist_ok=True)
    reference: list[str] = []
    timings: dict[str, dict[str, float | None]] = {}

    def signature(run: kmatrix.KernelRun) -> str | None:
        if run.result is None:
            return None
        cells = run.result.cells
        if verb == "run":
            st = cells["command"].status
            return None if st is kmatrix.Status.NOT_RUN else st.value
        return "; ".join(f"{k}={c.status.value}:{c.summary}" for k, c in sorted(cells.items()))

    def judge(release: str) -> Verdict:
        t0 = time.monotonic()
        try:
            k = kernels.fetch_build(by_release[release])
        except LabError as e:
            say(f"bisect: {release}: cannot fetch ({e}): skipped")
            return Verdict.SKIP
        fetched = time.monotonic() - t0
        run = kmatrix.run_on(k, verb, args, logs / f"{kmatrix.safe_name(release)}.log")
        timings[release] = {"fetch": round(fetched, 1), "run": round(run.seconds, 1),
                            "boot": run.booted}
        sig = signature(run)
        if sig is None:
            return Verdict.SKIP
        if not reference:
            reference.append(sig)
        return Verdict.GOOD if sig == reference[0] else Verdict.BAD

    def step(s: Step[str]) -> None:
        say(f"bisect: {s.build}: {s.verdict.value} in {s.seconds:.0f}s")

    t0 = time.monotonic()
    result = bisect([x.release for x in span], judge, step)
    out = KernelBisection(result, [x.release for x in span],
                          reference[0] if reference else "", time.monotonic() - t0,
                          timings=timings)
    lo, hi = by_release[result.last_good], by_release[result.first_bad]
    newer = hi if kernels.compare_versions(hi.version, lo.version) > 0 else lo
    text = changelog_of(kernels.build_dir(newer) / "root") if kernels.is_cached(newer) else None
    if text is None:
        out.suspects_note = f"no changelog in {newer.release}'s unpacked packages"
    else:
        out.suspects = suspects(text, lo.version, hi.version)
    return out


# -- the suspects: changelog entries between the two uploads -------------------------

#: What a changelog item must name to be a suspect: IPVS, netfilter, neighbour/ARP,
#: IPv4/IPv6 routing or FIB.
SUSPECT = re.compile(r"\b(ipvs|ip_vs\w*|netfilter|nf_\w+|nft_\w+|nf_tables|conntrack|"
                     r"neigh\w*|arp|ndisc|ipv4|ipv6|route|routes|routing|fib\w*|"
                     r"ip6?_route\w*|rt6_\w+)\b", re.I)
_HEAD = re.compile(r"^(\S+) \(([^)]+)\) ")
_COMMIT = re.compile(r"\b[0-9a-f]{12,40}\b")


@dataclass(frozen=True)
class Suspect:
    #: the upload (package version) whose changelog entry has it
    version: str
    text: str
    #: upstream commit ids the item names
    commits: tuple[str, ...] = ()


def changelog_items(text: str) -> list[tuple[str, str]]:
    """(upload version, item) of every ``*``/``-`` item of a Debian changelog, each
    item's continuation lines joined."""
    out: list[tuple[str, str]] = []
    version = ""
    for line in text.splitlines():
        m = _HEAD.match(line)
        if m:
            # linux-signed-amd64's uploads are versioned <upstream>+<rev> for
            # linux's <upstream>-<rev>
            version = (m.group(2).replace("+", "-", 1) if m.group(1).startswith("linux-signed")
                       else m.group(2))
            continue
        s = line.strip()
        if not s or s.startswith("--") or s.startswith("["):
            continue
        if s[:2] in ("* ", "- "):
            out.append((version, s[2:]))
        elif out and out[-1][0] == version and line.startswith("      "):
            out[-1] = (version, f"{out[-1][1]} {s}")
    return out


def suspects(changelog: str, good_version: str, bad_version: str) -> list[Suspect]:
    """The items of the uploads after the older of the two versions up to the newer
    one that touch IPVS, netfilter, neighbour/ARP, IPv4/IPv6 routing or FIB."""
    # lazy: loaded only when suspects() runs (+36 modules, ~20 ms)
    from lab.sweep.kernels import compare_versions

    lo, hi = sorted((good_version, bad_version), key=cmp_to_key(compare_versions))
    return [Suspect(v, t, tuple(_COMMIT.findall(t))) for v, t in changelog_items(changelog)
            if compare_versions(lo, v) < 0 <= compare_versions(hi, v) and SUSPECT.search(t)]


def changelog_of(root: Path) -> str | None:
    """The kernel's changelog in an unpacked build: the largest ``changelog.Debian.gz``
    or ``changelog.gz`` of ``linux`` or ``linux-signed-*`` (whose entries carry
    linux's)."""
    best: tuple[int, str] | None = None
    for f in [*root.glob("usr/share/doc/*/changelog.Debian.gz"),
              *root.glob("usr/share/doc/*/changelog.gz")]:
        try:
            if f.is_symlink():
                continue
            text = gzip.decompress(f.read_bytes()).decode("utf-8", "replace")
        except (OSError, EOFError):
            continue
        if _HEAD.match(text) and text.startswith("linux") and (best is None or len(text) > best[0]):
            best = (len(text), text)
    return best[1] if best else None
