"""``--drlab-forks N``: run the collected tests in N processes forked from this one.

pytest-xdist starts each of its workers as a new interpreter that imports pytest,
pyroute2, scapy and the lab, then collects the tests again. Under software
emulation (the VM part of ``scripts/test``) that is ~20 s of CPU per worker, and
its controller takes more while the tests run. A fork of this process, made once
it has collected, starts in milliseconds and shares its memory.

How it runs:

- Each worker takes one test at a time, in collection order (tests/integration/
  conftest.py puts the longest first), and holds the next one: it must know the
  test that follows to keep what the two share (module and session fixtures),
  the same look-ahead as pytest-xdist's workers.
- Each test's start, reports, warnings and end go back to this process, which
  reports them as if it had run the test: the terminal, ``--durations``,
  ``-x`` and the drlab plugin's IPVS accounting see every test.
- A worker that dies fails the test it was running, with its exit status; the
  test it held goes back to the queue and a new worker takes over.
- Ctrl-C (or SIGTERM to a worker) tears the worker's current test down, as pytest
  does. A worker whose parent dies gets SIGTERM (``PR_SET_PDEATHSIG``); what a
  SIGKILL leaves, ``drlab cleanup`` removes.
- Each worker has ``DRLAB_WORKER`` (``fw0``, ``fw1``, ...) and shares
  ``DRLAB_TESTRUN`` with the others, as pytest-xdist's ``PYTEST_XDIST_WORKER``
  and ``PYTEST_XDIST_TESTRUNUID``.

It does not combine with pytest-xdist (``-n``) or ``--pdb``.
"""

from __future__ import annotations

import ctypes
import gc
import os
import pickle
import selectors
import signal
import struct
import sys
import traceback
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NoReturn

import pytest

from lab.util import wait_for

_HEAD = struct.Struct("!I")
_PR_SET_PDEATHSIG = 1


def _send(fd: int, msg: tuple[Any, ...]) -> None:
    data = pickle.dumps(msg)
    view = memoryview(_HEAD.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read(fd: int, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def _recv(fd: int) -> tuple[Any, ...]:
    (n,) = _HEAD.unpack(_read(fd, _HEAD.size))
    message: tuple[Any, ...] = pickle.loads(_read(fd, n))
    return message


def _warning(w: warnings.WarningMessage) -> tuple[Any, ...]:
    fields = (w.message, w.category, w.filename, w.lineno, w.line)
    try:
        pickle.dumps(fields)
    except Exception:  # an unpicklable warning argument: keep its text
        fields = (str(w.message), UserWarning, w.filename, w.lineno, w.line)
    return fields


def configure(config: pytest.Config, count: int) -> None:
    """Register the fork pool for ``count`` workers (the drlab plugin calls this)."""
    if getattr(config.option, "numprocesses", None):
        raise pytest.UsageError("--drlab-forks and pytest-xdist's -n: give one of them")
    if getattr(config.option, "usepdb", False):
        raise pytest.UsageError("--drlab-forks and --pdb: the debugger needs one process")
    config.pluginmanager.register(_Pool(config, count), "drlab-forks")


@dataclass
class _Worker:
    wid: str
    pid: int
    rfd: int  # its reports to us
    wfd: int  # our answers to it
    current: int | None = None  # the test it runs (started, not finished)
    held: list[int] = field(default_factory=list)  # tests given to it, not finished


class _Pool:
    def __init__(self, config: pytest.Config, count: int):
        self.config = config
        self.count = count
        self.serial = 0
        self.workers: dict[int, _Worker] = {}  # by rfd
        self.stopping = False

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        if (self.count < 1 or self.config.option.collectonly or not session.items
                or (session.testsfailed
                    and not self.config.option.continue_on_collection_errors)):
            return None  # pytest's own loop (it also stops on collection errors)
        items = session.items
        queue = deque(range(len(items)))
        os.environ["DRLAB_TESTRUN"] = f"forks{os.getpid()}"
        # One base for every worker's tmp_path (numbered directories under it are
        # made race-free), made here: pytest keeps its factory on the config.
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is not None:
            factory.getbasetemp()
        gc.collect()
        gc.freeze()  # the workers' collections leave this process's objects alone
        for _ in range(min(self.count, len(items))):
            self._spawn(session, queue.popleft())
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"drlab: {len(self.workers)} test processes forked from this one "
                          f"(--drlab-forks {self.count})")
        sel = selectors.DefaultSelector()
        for w in self.workers.values():
            sel.register(w.rfd, selectors.EVENT_READ)
        try:
            while self.workers:
                for key, _ in sel.select():
                    w = self.workers[key.fd]
                    try:
                        msg = _recv(w.rfd)
                    except (EOFError, OSError):
                        msg = None  # (not forked in here: a worker's errors would chain this)
                    if msg is not None:
                        self._handle(session, w, msg, queue)
                        continue
                    sel.unregister(w.rfd)
                    self._lost(session, w, queue)
                    if queue and not self.stopping:
                        nw = self._spawn(session, queue.popleft())
                        sel.register(nw.rfd, selectors.EVENT_READ)
        except BaseException:
            self._stop_all()
            raise
        finally:
            gc.unfreeze()
            os.environ.pop("DRLAB_TESTRUN", None)
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        return True

    def _spawn(self, session: pytest.Session, first: int) -> _Worker:
        wid = f"fw{self.serial}"
        self.serial += 1
        up_r, up_w = os.pipe()
        down_r, down_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            for w in self.workers.values():
                os.close(w.rfd)
                os.close(w.wfd)
            os.close(up_r)
            os.close(down_w)
            _child(session, wid, first, down_r, up_w)
        os.close(up_w)
        os.close(down_r)
        w = _Worker(wid, pid, up_r, down_w, held=[first])
        self.workers[up_r] = w
        return w

    def _handle(self, session: pytest.Session, w: _Worker, msg: tuple[Any, ...],
                queue: deque[int]) -> None:
        hook = self.config.hook
        kind = msg[0]
        if kind == "next":
            nxt = queue.popleft() if queue and not self.stopping else None
            if nxt is not None:
                w.held.append(nxt)
            _send(w.wfd, (nxt,))
        elif kind == "start":
            w.current = msg[1]
        elif kind == "logstart":
            hook.pytest_runtest_logstart(nodeid=msg[1], location=msg[2])
        elif kind == "report":
            rep = hook.pytest_report_from_serializable(config=self.config, data=msg[1])
            hook.pytest_runtest_logreport(report=rep)
            if session.shouldfail or session.shouldstop:
                self.stopping = True
        elif kind == "logfinish":
            hook.pytest_runtest_logfinish(nodeid=msg[1], location=msg[2])
        elif kind == "finish":
            w.held.remove(msg[1])
            w.current = None
        elif kind == "warning":
            message, category, filename, lineno, line = msg[1]
            wm = warnings.WarningMessage(message, category, filename, lineno, line=line)
            hook.pytest_warning_recorded.call_historic(kwargs=dict(
                warning_message=wm, when=msg[2], nodeid=msg[3], location=msg[4]))

    def _lost(self, session: pytest.Session, w: _Worker, queue: deque[int]) -> None:
        """A worker's pipe closed (it is done, or it died): reap it; fail the test it
        was running, if any, and put the one it held back in the queue."""
        del self.workers[w.rfd]
        os.close(w.rfd)
        os.close(w.wfd)
        _, status = os.waitpid(w.pid, 0)
        if w.current is not None:
            item = session.items[w.current]
            how = (f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                   else f"exit status {os.waitstatus_to_exitcode(status)}")
            rep = pytest.TestReport(
                item.nodeid, item.location, dict.fromkeys(item.keywords, 1), "failed",
                f"drlab forks: worker {w.wid} (pid {w.pid}) ended with {how} while it "
                f"ran this test", "call")
            hook = self.config.hook
            hook.pytest_runtest_logreport(report=rep)
            hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
            if session.shouldfail or session.shouldstop:
                self.stopping = True
        for idx in reversed([i for i in w.held if i != w.current]):
            queue.appendleft(idx)

    def _stop_all(self) -> None:
        """Interrupted: ask every worker to stop (SIGTERM: it tears its test down), then
        make sure, within a deadline, that none is left."""
        for w in self.workers.values():
            try:
                os.kill(w.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

        def reaped() -> bool:
            for w in list(self.workers.values()):
                if os.waitpid(w.pid, os.WNOHANG)[0]:
                    del self.workers[w.rfd]
                    os.close(w.rfd)
                    os.close(w.wfd)
            return not self.workers

        try:
            wait_for(reaped, 30, "the test processes to stop", interval=0.1)
        except Exception:
            for w in self.workers.values():
                os.kill(w.pid, signal.SIGKILL)
                os.waitpid(w.pid, 0)
            self.workers.clear()


class _Reporter:
    """In a worker: sends what pytest reports to the parent, instead of a terminal."""

    def __init__(self, config: pytest.Config, fd: int):
        self.config = config
        self.fd = fd

    def pytest_runtest_logstart(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        _send(self.fd, ("logstart", nodeid, location))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = self.config.hook.pytest_report_to_serializable(config=self.config, report=report)
        _send(self.fd, ("report", data))

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        _send(self.fd, ("logfinish", nodeid, location))

    def pytest_warning_recorded(self, warning_message: warnings.WarningMessage, when: str,
                                nodeid: str, location: tuple[str, int, str] | None) -> None:
        _send(self.fd, ("warning", _warning(warning_message), when, nodeid, location))


def _child(session: pytest.Session, wid: str, first: int, rfd: int, wfd: int) -> NoReturn:
    """A worker's life: run tests as the parent hands them out, then exit (never return
    into the parent's pytest)."""
    me = os.getpid()
    code = 0
    current: int | None = None

    def on_term(signum: int, frame: object) -> None:
        if os.getpid() != me:  # a fork of this worker's: die as by default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        signal.signal(signal.SIGTERM, on_term)
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass
        os.environ["DRLAB_WORKER"] = wid
        config = session.config
        pm = config.pluginmanager
        term = pm.get_plugin("terminalreporter")
        if term is not None:
            pm.unregister(term)
        capman = pm.get_plugin("capturemanager")
        if capman is not None and capman.is_globally_capturing():
            # its own capture files: the parent's are shared by every fork
            capman.stop_global_capturing()
            capman.start_global_capturing()
            capman.suspend_global_capture()
        pm.register(_Reporter(config, wfd), "drlab-forks-reporter")
        items = session.items
        current = first
        while current is not None:
            _send(wfd, ("next",))
            (nxt,) = _recv(rfd)
            _send(wfd, ("start", current))
            config.hook.pytest_runtest_protocol(
                item=items[current], nextitem=None if nxt is None else items[nxt])
            _send(wfd, ("finish", current))
            current = nxt
    except KeyboardInterrupt:
        code = 130
        for sig in (signal.SIGINT, signal.SIGTERM):  # the teardown is not interrupted
            signal.signal(sig, signal.SIG_IGN)
        if current is not None:
            try:  # tear down what the test set up (its lab), as pytest does on Ctrl-C
                item = session.items[current]
                item.ihook.pytest_runtest_teardown(item=item, nextitem=None)
            except BaseException:
                pass
    except BaseException:
        code = 1
        try:
            sys.stderr.write(f"drlab forks: worker {wid}: {traceback.format_exc()}")
        except BaseException:
            pass
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)
