"""The kernel's own word: warnings in a VM's kernel log fail the run.

Every VM run (``scripts/vm-run``: the suite, ``kernels run``, bisect; the VM that
stays up, after each command) reads the guest's kernel log and looks for what
NIPA's checks look for: ``WARNING:``, ``BUG:``, ``Oops``, KASAN/UBSAN reports,
lockdep splats, hung tasks and RCU stalls (:data:`PATTERNS`). A line matching one
of them, unless it is known-benign boot noise (:data:`BENIGN`, each with its
reason), is a :class:`Finding`; :func:`scan` returns them with an excerpt (the line
and the trace after it). ``--allow-kernel-warnings`` (vm-run) or
``DRLAB_ALLOW_KERNEL_WARNINGS=1`` turns the verdict off.

``python -m lab.machine.dmesg FILE`` (what vm-run runs on the host, on the log the
guest wrote): the excerpt on stdout and exit 1 if the log has a warning, else 0.

Pure parsing: no kernel is touched here, except :func:`kmsg_records`, which reads
``/dev/kmsg`` from a sequence number on (the VM's server, after each command).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: What makes a kernel log line a warning: (kind, pattern on the message).
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("warning", re.compile(r"(^|\s)WARNING:")),
    ("bug", re.compile(r"(^|\s)BUG:")),
    ("oops", re.compile(r"\bOops\b")),
    ("kasan", re.compile(r"\bKASAN\b")),
    ("ubsan", re.compile(r"\bUBSAN\b")),
    ("lockdep", re.compile(r"possible circular locking|inconsistent lock state|"
                           r"possible recursive locking|suspicious RCU usage|"
                           r"possible irq lock inversion|lock held when returning|"
                           r"bad unlock balance|held lock freed")),
    ("hung task", re.compile(r"blocked for more than \d+ seconds")),
    ("rcu stall", re.compile(r"rcu_(sched|preempt|bh)? ?detected (expedited )?stalls|"
                             r"rcu: INFO:|self-detected stall")),
)

#: Lines that match a pattern but are known-benign, each with the reason. (A boot of
#: Debian's 6.1 under software emulation here printed none of them, nor anything else
#: that matches; these two are x86 mitigation notes, arch/x86/kernel/cpu/bugs.c, that
#: contain "WARNING:" on some CPUs and configurations.)
BENIGN: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^Spectre V2 : WARNING: Unprivileged eBPF"),
     "a note on the mitigation policy, not a kernel fault (printed at boot when "
     "unprivileged eBPF is allowed)"),
    (re.compile(r"^RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable"),
     "a note on the emulated CPU's mitigations (mitigations=off under emulation)"),
)

#: How many lines after a warning's line its excerpt shows at most (its trace).
EXCERPT_LINES = 12
_TIMESTAMP = re.compile(r"^\s*\[\s*\d+\.\d+\]\s?")
_END = re.compile(r"---\[ end trace|^\s*$")


@dataclass(frozen=True)
class Finding:
    """One warning in the log: its kind, its line and the excerpt (line and trace)."""
    kind: str
    line: str
    excerpt: tuple[str, ...]

    def text(self) -> str:
        return "\n".join(self.excerpt)


def message(line: str) -> str:
    """A log line's message: without dmesg's ``[  1.234567] `` timestamp."""
    return _TIMESTAMP.sub("", line.rstrip("\n"))


def classify(msg: str) -> str | None:
    """The kind of warning ``msg`` (one message) is, or None (none, or benign)."""
    for pattern, _why in BENIGN:
        if pattern.search(msg):
            return None
    for kind, pattern in PATTERNS:
        if pattern.search(msg):
            return kind
    return None


def scan(lines: Iterable[str]) -> list[Finding]:
    """The warnings in a kernel log (dmesg's lines, or /dev/kmsg's messages), each with
    its excerpt: its line and up to :data:`EXCERPT_LINES` after it, to the end of its
    trace; a line already shown in an excerpt starts no finding of its own."""
    msgs = [message(x) for x in lines]
    found: list[Finding] = []
    i = 0
    while i < len(msgs):
        kind = classify(msgs[i])
        if kind is None:
            i += 1
            continue
        end = i + 1
        while end < len(msgs) and end <= i + EXCERPT_LINES:
            end += 1
            if _END.search(msgs[end - 1]):
                break
        found.append(Finding(kind, msgs[i], tuple(msgs[i:end])))
        i = end
    return found


def report(findings: list[Finding]) -> str:
    """What a run says about its findings (empty if none)."""
    if not findings:
        return ""
    kinds = sorted({f.kind for f in findings})
    head = f"the kernel warned ({len(findings)} in its log: {', '.join(kinds)}):"
    return "\n".join([head, *("  " + x for f in findings for x in f.excerpt)])


def allowed(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``env`` (default: this process's environment) allows kernel warnings
    (``DRLAB_ALLOW_KERNEL_WARNINGS=1``)."""
    value = (os.environ if env is None else env).get("DRLAB_ALLOW_KERNEL_WARNINGS", "")
    return str(value) not in ("", "0")


def kmsg_records(after: int = -1, path: str = "/dev/kmsg") -> tuple[list[str], int]:
    """The messages in the kernel's log buffer whose sequence number is above ``after``
    (their continuation lines left out), and the last sequence number read (``after``
    if none)."""
    msgs: list[str] = []
    last = after
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        while True:
            try:
                rec = os.read(fd, 8192)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten before read: the next one
                    continue
                raise
            if not rec:
                break
            head, _, body = rec.decode(errors="replace").partition(";")
            with contextlib.suppress(ValueError, IndexError):
                seq = int(head.split(",")[1])
                if seq <= after:
                    continue
                last = seq
                msgs.append(body.split("\n", 1)[0])
    finally:
        os.close(fd)
    return msgs, last


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m lab.machine.dmesg FILE", file=sys.stderr)
        return 2
    try:
        with open(argv[0], errors="replace") as f:
            findings = scan(f)
    except OSError as e:
        print(f"dmesg: {argv[0]}: {e.strerror}", file=sys.stderr)
        return 2
    if findings:
        print(report(findings))
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
