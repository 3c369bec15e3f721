"""pytest plugin (entry point ``pytest11: drlab``): fixtures and IPVS accounting.

Fixture tree, each adding one thing on top of the one below::

    drlab_root ── drlab_netns            one bare namespace, owned and cleaned
         │
         └──── lab_factory               build any Topology (namespaces, bridges, veths)
                   │
    dr_topology ───┤                     the default DR topology, parametrizable
                   │
    drlab_ipvs ────┴── dr_lab            a ready lab: IPVS loaded, identity services up

Parametrize the DR lab with a marker or indirect parametrization::

    @pytest.mark.drlab(rs=3, scheduler="wrr", weights={"rs1": 2})
    def test_x(dr_lab): ...

    @pytest.mark.parametrize("dr_topology", [{"rs": 4}], indirect=True)
    def test_y(dr_lab): ...

Tests that use ``dr_lab`` (or are marked ``ipvs``) need IPVS; on a kernel
without it they are skipped, with a pointer to the VM runner. With
``--require-ipvs`` (or ``DRLAB_REQUIRE_IPVS=1``; ``scripts/test`` sets it in
CI) such a skip is an error, and a session in which no IPVS test ran fails:
a skip is not a pass.

Every lab built by ``lab_factory`` (so ``dr_lab`` too) is recorded, every
interface from build to the end of the test, in a bounded ring
(:mod:`lab.probes.recorder`); when the test fails its pcaps, one per
interface, go to ``--drlab-artifacts`` with the state dump and are listed in
the report's "drlab artifacts" section. ``--drlab-capture=always`` writes
them for passing tests too, ``never`` records nothing.
"""

from __future__ import annotations

import fcntl
import os
import platform
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from lab.errors import PreflightError, UsageError
from lab.machine.preflight import require_ipvs, require_netns
from lab.util import SCALE_ERROR, parse_shard, sharded

if TYPE_CHECKING:  # the plugin loads with pytest: the lab's modules only when used
    from pluggy import Result

    from lab.builder import Lab
    from lab.model import Topology
    from lab.probes.recorder import Recorder

_IPVS_FIXTURES = {"dr_lab", "drlab_ipvs", "keepalived_lab"}
CAPTURE_MODES = ("on-failure", "always", "never")
_NETNS_FIXTURES = {"drlab_root", "drlab_netns", "lab_factory"}


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("drlab", "LVS-DR lab")
    g.addoption("--require-ipvs", action="store_true",
                default=os.environ.get("DRLAB_REQUIRE_IPVS") == "1",
                help="fail (not skip) IPVS tests when IPVS is missing, and fail the session "
                     "if no IPVS test ran (env DRLAB_REQUIRE_IPVS=1)")
    g.addoption("--no-host-check", action="store_true", default=False,
                help="do not compare the root namespace before and after the session")
    g.addoption("--drlab-artifacts", default=None, metavar="DIR",
                help="where failing tests save pcaps and state dumps "
                     "(default: <rootdir>/artifacts)")
    g.addoption("--drlab-shard", default=None, metavar="I/N",
                help="run only every Nth collected test, from the Ith (a shard of "
                     "`drlab kernels run --shard`)")
    g.addoption("--drlab-forks", type=int, default=0, metavar="N",
                help="run the collected tests in N processes forked from this one "
                     "(lab/pytest_forks.py): workers that start at once, where "
                     "pytest-xdist's start a new interpreter each (slow in a VM)")
    g.addoption("--drlab-capture", choices=CAPTURE_MODES, default="on-failure",
                help="record every interface of every lab a test builds (lab_factory, "
                     "dr_lab), for the whole test, in a bounded ring; write one pcap per "
                     "interface when the test fails (on-failure, the default), after every "
                     "test (always), or record nothing (never)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "netns: needs root and network namespaces")
    config.addinivalue_line("markers", "ipvs: needs a kernel with IPVS and ipvsadm")
    config.addinivalue_line("markers", "drlab(**kwargs): arguments for the default DR topology")
    config.addinivalue_line("markers", "keepalived(**kwargs): arguments for keepalived_dr() "
                            "(keepalived_topology/keepalived_lab), or files=[PATH, ...]")
    config.addinivalue_line("markers", "subprocess: starts a new Python interpreter")
    config.addinivalue_line("markers", "rootns: changes the (disposable) root namespace "
                            "while it runs: under pytest-xdist or --drlab-forks no other "
                            "namespace test runs meanwhile")
    config.pluginmanager.register(_Session(config), "drlab-session")
    if SCALE_ERROR is not None:
        raise pytest.UsageError(SCALE_ERROR)
    forks = config.getoption("--drlab-forks")
    if forks < 0:
        raise pytest.UsageError(f"--drlab-forks {forks}: give a number of processes (0: none)")
    if forks:
        # lazy: every pytest run loads the plugin (+7 modules, ~4 ms)
        from lab import pytest_forks

        pytest_forks.configure(config, forks)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & _IPVS_FIXTURES and not item.get_closest_marker("ipvs"):
            item.add_marker(pytest.mark.ipvs)
        if names & _NETNS_FIXTURES and not item.get_closest_marker("netns"):
            item.add_marker(pytest.mark.netns)


def _ipvs_problem() -> str | None:
    try:
        require_ipvs()
    except PreflightError as e:
        return str(e)
    return None


def _need_ipvs(config: pytest.Config) -> None:
    """Skip without IPVS; fail instead under --require-ipvs (a skip is not a pass)."""
    problem = _ipvs_problem()
    if problem:
        if config.getoption("--require-ipvs"):
            pytest.fail(f"IPVS required (--require-ipvs) but: {problem}", pytrace=False)
        pytest.skip(problem)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("ipvs"):
        _need_ipvs(item.config)
    elif item.get_closest_marker("netns") and os.geteuid() != 0:
        pytest.skip("needs root (network namespaces): run with sudo")


#: Under pytest-xdist or --drlab-forks: every namespace test holds this lock shared, a
#: ``rootns`` test holds it alone, so a test that changes the root namespace never
#: overlaps another worker's labs (which would inherit what it set).
ROOTNS_LOCK = "pytest-rootns.lock"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    worker = os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get("DRLAB_WORKER")
    if (not worker or os.geteuid() != 0
            or not any(item.get_closest_marker(m) for m in ("netns", "ipvs", "rootns"))):
        yield
        return

    # lazy: every pytest run loads the plugin (+245 modules, ~110 ms; pyroute2)
    from lab.builder.ownership import RUN_DIR

    RUN_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(RUN_DIR / ROOTNS_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if item.get_closest_marker("rootns") else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


class _Session:
    """Per-session bookkeeping: reaping, host invariance, IPVS test accounting.

    Under pytest-xdist the controller does the accounting (worker reports
    reach it) and the host check (after every worker is done).
    """

    def __init__(self, config: pytest.Config):
        self.config = config
        self.worker = hasattr(config, "workerinput")
        self.ipvs = {"passed": 0, "failed": 0, "skipped": 0}
        self.snapshot: Any = None
        self.messages: list[str] = []

    @pytest.hookimpl(trylast=True)  # after -m/-k: the shards split what would run
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        if not self.config.getoption("--drlab-shard"):
            return
        try:
            shard = parse_shard(self.config.getoption("--drlab-shard"), "--drlab-shard")
        except UsageError as e:
            raise pytest.UsageError(str(e)) from None
        keep = {id(x) for _, x in sharded(items, shard)}
        self.config.hook.pytest_deselected(items=[x for x in items if id(x) not in keep])
        items[:] = [x for x in items if id(x) in keep]

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if os.geteuid() != 0:
            return
        # lazy: every pytest run loads the plugin (+245 modules, ~110 ms; pyroute2)
        from lab.builder import ownership

        removed = ownership.reap()
        if removed and not self.worker:
            print(f"\ndrlab: reaped what dead runs left: {', '.join(removed)}")
        if not self.worker and not self.config.getoption("--no-host-check"):
            # lazy: every pytest run loads the plugin (+246 modules, ~110 ms; pyroute2)
            from lab.machine.hostcheck import snapshot

            self.snapshot = snapshot()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if "ipvs" in report.keywords and (report.when == "call" or not report.passed):
            self.ipvs[report.outcome] += 1

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.worker:
            return
        if self.snapshot is not None:
            # lazy: every pytest run loads the plugin (+246 modules, ~100 ms; pyroute2)
            from lab.builder import ownership
            from lab.machine.hostcheck import diff, snapshot

            ownership.reap()
            changes = diff(self.snapshot, snapshot())
            if changes:
                self.messages.append("drlab: the session changed the host's root namespace: "
                                     + "; ".join(changes))
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.config.getoption("--require-ipvs"):
            ran = self.ipvs["passed"] + self.ipvs["failed"]
            if ran == 0 or self.ipvs["skipped"]:
                self.messages.append(
                    f"drlab: --require-ipvs: {ran} IPVS tests executed and "
                    f"{self.ipvs['skipped']} skipped: IPVS tests must run, a skip is not a pass")
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.worker:
            return
        st = self.ipvs
        terminalreporter.write_line(
            f"drlab: IPVS tests on kernel {platform.release()}: {st['passed']} passed, "
            f"{st['failed']} failed, {st['skipped']} skipped")
        for m in self.messages:
            terminalreporter.write_line(m, red=True, bold=True)


# -- fixtures -----------------------------------------------------------------

@pytest.fixture(scope="session")
def drlab_root() -> None:
    """Root with network namespaces, else skip."""
    try:
        require_netns()
    except PreflightError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def drlab_ipvs(drlab_root: None, request: pytest.FixtureRequest) -> None:
    """A kernel with IPVS and ipvsadm on PATH, else skip (fail under --require-ipvs)."""
    _need_ipvs(request.config)


_LABS: pytest.StashKey[list[Lab]] = pytest.StashKey()
_RECORDER: pytest.StashKey[Recorder] = pytest.StashKey()


def _artifacts_dir(item: pytest.Item) -> Path:
    base = item.config.getoption("--drlab-artifacts") or Path(item.config.rootpath, "artifacts")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in item.nodeid)[-120:]
    return Path(base, safe)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Result[pytest.TestReport], None]:
    outcome = yield
    rep = outcome.get_result()
    labs = item.stash.get(_LABS, [])
    if rep.when not in ("setup", "call") or not labs:
        return
    always = item.config.getoption("--drlab-capture") == "always"
    if not rep.failed and not (always and rep.when == "call" and rep.passed):
        return
    # lazy: every pytest run loads the plugin (+266 modules, ~120 ms; pyroute2)
    from lab.probes.dump import save_artifacts
    from lab.probes.path import last_proof
    from lab.probes.recorder import recording_of

    recorder = item.stash.get(_RECORDER, None)
    if recorder is not None:
        recorder.stop()  # drains what the kernel still queues; the test is over
    directory = _artifacts_dir(item)
    lines = []
    for lab in labs:
        try:
            recording = recording_of(lab)
            if rep.failed:
                files = save_artifacts(lab, directory)
            else:  # --drlab-capture=always, a passing test: its packets only
                files = recording.write(directory) if recording is not None else []
            recorded = set(recording.files(directory)) if recording is not None else set()
            lines.append(f"lab {lab.id}: {len(files)} files in {directory}")
            lines += [f"  {f.name}" for f in files if f not in recorded]
            if recording is not None:
                lines += [f"  {x}" for x in recording.summary()]
            proof = last_proof(lab)
            if rep.failed and proof is not None:
                lines += ["DR path ladder:", proof.ladder()]
        except Exception as e:  # never mask the test's own failure
            lines.append(f"lab {lab.id}: could not save artifacts: {e}")
    rep.sections.append(("drlab artifacts", "\n".join(lines)))


class LabFactory(Protocol):
    """What the ``lab_factory`` fixture gives: annotate a test's argument with it
    (``def test_x(lab_factory: LabFactory)``) and an editor completes its calls."""

    def __call__(self, topology: Topology, roles: bool = True, *, services: bool = True,
                 ipvs: bool = True, name: str | None = None, pin_sysctls: bool = True
                 ) -> Lab: ...


@pytest.fixture
def lab_factory(drlab_root: None, request: pytest.FixtureRequest) -> Iterator[LabFactory]:
    """``make(topology, roles=True, **kw) -> Lab``: build labs torn down after the test.

    With ``roles=True`` the IPVS service is loaded (``ipvs``) and identity services
    are started (``services``; needs IPVS when the topology has a service);
    ``roles=False`` builds namespaces, links, addresses, routes and sysctls only.
    ``name`` and ``pin_sysctls`` are :class:`lab.builder.Lab`'s.

    Unless ``--drlab-capture=never``, every interface of every lab is recorded
    from the moment it is built (before its IPVS service is loaded) until the
    test ends (:mod:`lab.probes.recorder`).
    """
    # lazy: every pytest run loads the plugin (+245 modules, ~110 ms; pyroute2)
    from lab.builder import Lab

    labs: list[Lab] = []
    request.node.stash[_LABS] = labs
    capture = request.config.getoption("--drlab-capture") != "never"

    def make(topology: Topology, roles: bool = True, *, services: bool = True,
             ipvs: bool = True, name: str | None = None, pin_sysctls: bool = True) -> Lab:
        with_roles = roles and topology.service is not None
        if with_roles:
            _need_ipvs(request.config)
        def built(lab: Lab) -> None:
            labs.append(lab)  # torn down after the test (and its packets kept)
            if capture:
                # lazy: every pytest run loads the plugin (+250 modules, ~110 ms; pyroute2)
                from lab.probes.recorder import Recorder

                if _RECORDER not in request.node.stash:
                    request.node.stash[_RECORDER] = Recorder()
                request.node.stash[_RECORDER].add(lab)

        if with_roles:
            # lazy: every pytest run loads the plugin (+246 modules, ~100 ms; pyroute2)
            from lab.roles import up

            return up(topology, services=services, ipvs=ipvs, name=name,
                      pin_sysctls=pin_sysctls, on_built=built)
        lab = Lab(topology, name=name, pin_sysctls=pin_sysctls).build()
        built(lab)
        return lab

    yield make
    try:
        recorder = request.node.stash.get(_RECORDER, None)
        if recorder is not None:
            recorder.stop()
    finally:
        for lab in reversed(labs):
            lab.teardown()


@pytest.fixture
def drlab_netns(lab_factory: LabFactory) -> str:
    """One bare, owned network namespace (only ``lo``); returns its name."""
    # lazy: every pytest run loads the plugin (+9 modules, ~7 ms)
    from lab.model import Host, Topology

    lab = lab_factory(Topology("netns", [Host("h", "client")], []), roles=False)
    return lab.ns("h")


def _topology_kwargs(request: pytest.FixtureRequest, marker: str) -> dict[str, Any]:
    """Keyword arguments for a topology fixture: the ``marker``'s, then indirect params."""
    kw: dict[str, Any] = {}
    m = request.node.get_closest_marker(marker)
    if m:
        kw.update(m.kwargs)
    if hasattr(request, "param"):
        kw.update(request.param)
    return kw


@pytest.fixture
def dr_topology(request: pytest.FixtureRequest) -> Topology:
    """The default DR topology; kwargs from ``@pytest.mark.drlab(...)`` or indirect params.
    ``services=N`` makes it a scale lab (:func:`lab.model.scale.many_services`: N
    services on consecutive VIPs; ``rs``, ``holder``, ``port``, ``scheduler`` apply)."""
    # lazy: every pytest run loads the plugin (+9 modules, ~8 ms)
    from lab.model import default_dr
    from lab.model.scale import many_services

    kw = _topology_kwargs(request, "drlab")
    if "services" in kw:
        return many_services(kw.pop("services"), **kw)
    return default_dr(**kw)


@pytest.fixture
def dr_lab(drlab_ipvs: None, lab_factory: LabFactory, dr_topology: Topology) -> Lab:
    """A running DR lab: director with the IPVS service, real servers serving."""
    return lab_factory(dr_topology)


@pytest.fixture
def keepalived_topology(request: pytest.FixtureRequest) -> Topology:
    """The default keepalived lab (two directors under VRRP, keepalived's virtual_server,
    health checks, connection sync); kwargs for
    :func:`lab.model.keepalived.keepalived_dr` from ``@pytest.mark.keepalived(...)`` or
    indirect params; ``files=[PATH, ...]`` builds the lab from keepalived.conf files."""
    # lazy: every pytest run loads the plugin (+10 modules, ~10 ms)
    from lab.model.keepalived import keepalived_dr, topology_from_files

    kw = _topology_kwargs(request, "keepalived")
    files = kw.pop("files", None)
    if files:
        topology, _derived = topology_from_files([(str(f), Path(f).read_text()) for f in files])
        return topology
    return keepalived_dr(**kw)


@pytest.fixture
def keepalived_lab(drlab_ipvs: None, lab_factory: LabFactory,
                   keepalived_topology: Topology, request: pytest.FixtureRequest) -> Lab:
    """A running keepalived DR lab: keepalived on every director, one of them holding
    the VIP (measured: its interface has it), real servers serving."""
    # lazy: every pytest run loads the plugin (+268 modules, ~120 ms; pyroute2)
    from lab.probes import vrrp
    from lab.roles import keepalived

    try:
        keepalived.binary()
    except PreflightError as e:
        if request.config.getoption("--require-ipvs"):
            pytest.fail(f"keepalived required (--require-ipvs) but: {e}", pytrace=False)
        pytest.skip(str(e))
    lab = lab_factory(keepalived_topology)
    vrrp.wait_holder(lab)
    return lab
