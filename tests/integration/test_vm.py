"""The VM that stays up (`drlab vm start|status|stop`, lab.machine.vm).

The first test runs the server's protocol on this host (the server is a process
like any other): commands, their output and exit codes, bad input. The second
boots the real VM and drives `scripts/drlab` across separate commands, then kills
the VM's host process and checks that `drlab cleanup` leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lab.util import wait_for

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    """Its own run directory (the VM's directory and record in it), so the machine's VM
    (if any) is not touched."""
    return {**os.environ, "DRLAB_RUN_DIR": str(tmp_path / "run"), "DRLAB_TIMEOUT_SCALE": "10"}


def _drlab(env: dict[str, str], *args: str, stdin: str | None = None,
           script: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = ([str(REPO / "scripts/drlab")] if script else [sys.executable, "-m", "lab"])
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env,
                          input=stdin, timeout=timeout, cwd=REPO)


def _marked(vm_dir: Path) -> list[str]:
    p = subprocess.run(["pgrep", "-af", str(vm_dir)], capture_output=True, text=True)
    return [x for x in p.stdout.splitlines() if "pgrep" not in x]


def _server(tmp_path: Path, env: dict[str, str],
            *more: str) -> tuple[subprocess.Popen, Path]:
    """The VM's server, run on this host, with a record naming it."""
    from lab.builder.ownership import proc_start_time

    d = tmp_path / "run" / "vm"
    for sub in ("req", "run", "out"):
        (d / sub).mkdir(parents=True, mode=0o700)
    server = subprocess.Popen([sys.executable, "-m", "lab", "vm", "serve", *more, str(d)],
                              env=env, cwd=REPO)
    wait_for(lambda: (d / "ready").exists(), 60, "the server to be ready")
    (tmp_path / "run" / "vm.json").write_text(json.dumps({
        "pid": server.pid, "start_time": proc_start_time(server.pid), "kernel": "-",
        "memory": "-", "accel": "none: this host", "started": 0, "dir": str(d)}))
    return server, d


def test_the_servers_protocol_on_this_host(tmp_path):
    env = _env(tmp_path)
    server, d = _server(tmp_path, env)
    try:
        p = _drlab(env, "vm", "status")
        assert p.returncode == 0 and "VM running" in p.stdout and "ready" in p.stdout
        # a record from before a reboot of the host names no running VM
        rec = json.loads((tmp_path / "run" / "vm.json").read_text())
        (tmp_path / "run" / "vm.json").write_text(json.dumps({**rec, "boot_id": "x"}))
        assert _drlab(env, "vm", "status").returncode == 1
        (tmp_path / "run" / "vm.json").write_text(json.dumps(rec))
        p = _drlab(env, "vm", "run", "--", "scenarios", "--json")
        assert p.returncode == 0, p.stderr
        assert len(json.loads(p.stdout)) >= 30
        p = _drlab(env, "vm", "run", "--", "scenario", "run", "no-such-thing")
        assert (p.returncode, p.stderr) == (2, "drlab: error: no scenario 'no-such-thing'; "
                                               "see `drlab scenarios`\n")
        assert list((d / "out").iterdir()) == [] and list((d / "req").iterdir()) == []
        # a file the VM would write outside the repository (into its throw-away /tmp) is
        # refused before the command is handed over; one under the repository is not
        p = _drlab(env, "vm", "run", "--", "diagnose", "c.toml", "--html", "/tmp/diag.html")
        assert p.returncode == 2 and p.stderr.startswith(
            "drlab: error: --html /tmp/diag.html: this command runs in a VM, which writes "
            f"files through to this host only under {REPO}; "), p.stderr
        assert p.stderr.count("\n") == 1 and list((d / "req").iterdir()) == []
        p = _drlab(env, "vm", "run", "--", "scenario", "run", "no-such-thing", "--json",
                   "v.json")
        assert p.returncode == 2 and "no scenario 'no-such-thing'" in p.stderr, p.stderr
    finally:
        (d / "stop").touch()
        server.wait(timeout=30)
    assert server.returncode == 0
    # the server is gone: its record is stale and says so
    p = _drlab(env, "vm", "status")
    assert p.returncode == 1 and "no VM is running (the VM booted by pid" in p.stdout
    p = _drlab(env, "vm", "run", "--", "scenarios")
    assert p.returncode == 3 and "scripts/drlab vm start" in p.stderr


def test_the_server_reports_the_kernels_new_warnings_after_each_command(tmp_path):
    """The server watches the kernel's log (a stand-in file for /dev/kmsg here: one
    record, read whole): a warning that appears while a command runs fails it (124, the
    excerpt on stderr), once; a failing command keeps its code; the boot's warning and
    every later one are in `vm status`; DRLAB_ALLOW_KERNEL_WARNINGS=1 keeps the code."""
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("4,1,0,-;WARNING: CPU: 0 PID: 1 at boot.c:1\n")
    env = _env(tmp_path)
    env.pop("DRLAB_ALLOW_KERNEL_WARNINGS", None)
    server, d = _server(tmp_path, env, "--kmsg", str(kmsg))
    try:
        p = _drlab(env, "vm", "run", "--", "scenarios")
        assert p.returncode == 0 and "kernel warned" not in p.stderr, p.stderr  # boot's
        p = _drlab(env, "vm", "status")
        assert "the kernel warned since boot" in p.stdout and "at boot.c:1" in p.stdout
        kmsg.write_text("4,2,0,-;WARNING: drlab planted\n")
        p = _drlab(env, "vm", "run", "--", "scenarios")
        assert p.returncode == 124, p.stderr
        assert "drlab: vm: the kernel warned (1 in its log: warning):" in p.stderr
        assert "drlab: vm:   WARNING: drlab planted" in p.stderr
        assert "the command succeeded, but the kernel warned: exit 124" in p.stderr
        p = _drlab(env, "vm", "run", "--", "scenarios")  # reported once: not again
        assert p.returncode == 0 and "kernel warned" not in p.stderr, p.stderr
        kmsg.write_text("4,3,0,-;BUG: drlab planted\n")
        p = _drlab(env, "vm", "run", "--", "scenario", "run", "no-such-thing")
        assert p.returncode == 2 and "BUG: drlab planted" in p.stderr, p.stderr
        kmsg.write_text("4,4,0,-;Oops: drlab planted\n")
        p = _drlab({**env, "DRLAB_ALLOW_KERNEL_WARNINGS": "1"}, "vm", "run", "--",
                   "scenarios")
        assert p.returncode == 0 and "kernel warnings allowed" in p.stderr, p.stderr
        p = _drlab(env, "vm", "status")
        assert all(x in p.stdout for x in ("at boot.c:1", "WARNING: drlab planted",
                                           "BUG: drlab planted", "Oops: drlab planted"))
    finally:
        (d / "stop").touch()
        server.wait(timeout=30)


def _on_a_terminal(env: dict[str, str], args: list[str],
                   keys: list[tuple[bytes, bytes | tuple[int, int]]],
                   size: tuple[int, int] = (33, 111), timeout: float = 120
                   ) -> tuple[int, str, bool]:
    """Run ``drlab ARGS`` on a terminal of ``size`` (rows, columns); for each
    ``(wait, key)`` of ``keys``, once ``wait`` was printed since the previous key, type
    ``key`` (bytes) or resize the terminal to it (rows, columns); (exit code, all it
    printed, whether it left the terminal in canonical mode with echo)."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    import time

    pid, master = pty.fork()
    if pid == 0:
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
        os.chdir(REPO)
        os.execve(sys.executable, [sys.executable, "-m", "lab", *args], env)
    seen = b""
    keys = list(keys)
    since = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([master], [], [], 0.05)[0]:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            seen += data
        if keys and keys[0][0] in seen[since:]:
            since = len(seen)
            key = keys.pop(0)[1]
            if isinstance(key, tuple):
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", *key, 0, 0))
            else:
                os.write(master, key)
    else:
        os.kill(pid, signal.SIGKILL)
    _, st = os.waitpid(pid, 0)
    lflag = termios.tcgetattr(master)[3]
    os.close(master)
    cooked = bool(lflag & termios.ICANON and lflag & termios.ECHO)
    return os.waitstatus_to_exitcode(st), seen.decode(errors="replace"), cooked


@pytest.mark.netns
@pytest.mark.subprocess
def test_drlab_shell_on_a_terminal_gets_a_terminal_in_the_vm(tmp_path):
    """On a terminal, `drlab shell` through the server is interactive: the shell runs
    on a pty of the host terminal's size (a resize follows), with its prompt and
    Ctrl-C; the host terminal is restored afterwards."""
    env = {**_env(tmp_path), "PS1": "PROMPT> ", "SHELL": "/bin/bash"}
    server, d = _server(tmp_path, env)
    built = subprocess.run(  # a lab of namespaces only, whose owner has returned
        [sys.executable, "-c", "from lab.builder import Lab; from lab.model import Host, "
         "Topology; Lab(Topology('tty', [Host('h', 'client')], []), name='ttylab', "
         "persistent=True).build().close()"], env=env, cwd=REPO, capture_output=True, text=True)
    try:
        assert built.returncode == 0, built.stderr
        p = b"PROMPT> "
        shell = ["vm", "run", "--stdin", "--", "shell", "ttylab", "h", "bash", "--norc", "-i"]
        rc, seen, restored = _on_a_terminal(env, shell, [
            (p, b"tty; stty size; echo $((6*7))\r"),
            (p, b"sh -c 'echo RE\"\"ADY; exec sleep 600'\r"),
            (b"READY\r\n", b"\x03"),  # Ctrl-C as a key: the pty's line discipline signals it
            (p, b"echo rc=$?\r"),
            (p, (40, 120)),  # the host terminal is resized: the shell's follows
            (b"", b"for i in $(seq 200); do [ \"$(stty size)\" = '40 120' ] && break; "
                  b"sleep 0.05; done; echo size=$(stty size)\r"),
            (p, b"exit 7\r")])
        assert rc == 7, seen
        assert "/dev/pts/" in seen and "\n33 111\r" in seen and "\n42\r" in seen, seen
        assert "rc=130\r\n" in seen, seen  # sleep died of the SIGINT, the shell lived on
        assert "size=40 120\r\n" in seen, seen
        assert restored, "the host terminal was left in raw mode"
        assert list((d / "out").iterdir()) == []
    finally:
        subprocess.run([sys.executable, "-m", "lab", "down", "ttylab"], env=env, cwd=REPO,
                       capture_output=True)
        (d / "stop").touch()
        server.wait(timeout=30)


def test_a_lab_outlives_its_command_in_the_vm_and_nothing_outlives_the_vm(tmp_path):
    """scripts/drlab vm start as the README says (no DRLAB_TIMEOUT_SCALE: it waits as
    long as the boot makes progress); scripts/drlab up, check, shell, down as separate
    commands on a host without IPVS (they run in the VM); vm stop; a killed VM host
    process, then drlab cleanup."""
    env = _env(tmp_path)
    d = tmp_path / "run" / "vm"
    p = _drlab({k: v for k, v in env.items() if k != "DRLAB_TIMEOUT_SCALE"}, "vm", "start",
               script=True)
    assert p.returncode == 0, p.stdout + p.stderr
    try:
        assert "VM running" in p.stdout and "ready" in p.stdout
        p = _drlab(env, "vm", "start")
        assert p.returncode == 2 and "already running" in p.stderr
        p = _drlab(env, "up", "--name", "twice", script=True)
        assert p.returncode == 0, p.stdout + p.stderr
        p = _drlab(env, "check", "twice", script=True)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "OK" in p.stdout
        p = _drlab(env, "shell", "twice", "rs1", script=True, stdin="ip -o addr show lo\n")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "192.0.2.100/32" in p.stdout  # the VIP on rs1's lo, from inside its namespace
        rc, seen, restored = _on_a_terminal(  # on a terminal: a pty in the VM (root's prompt)
            env, ["vm", "run", "--stdin", "--", "shell", "twice", "rs1", "bash", "--norc", "-i"],
            [(b"# ", b"tty; ip -o addr show lo\r"), (b"# ", b"exit\r")])
        assert rc == 0 and restored and "/dev/pts/" in seen and "192.0.2.100/32" in seen, seen
        p = _drlab(env, "down", "twice", script=True)
        assert p.returncode == 0, p.stdout + p.stderr
        p = _drlab(env, "status", "twice", script=True)
        assert p.returncode == 2 and "twice" in p.stderr  # gone, and said so
    finally:
        p = _drlab(env, "vm", "stop")
    assert p.returncode == 0 and "VM stopped" in p.stdout, p.stdout + p.stderr
    assert _marked(d) == [] and not d.exists() and not (tmp_path / "run" / "vm.json").exists()
    # SIGKILL of the process that booted the VM, then cleanup: no qemu, no directory
    p = _drlab(env, "vm", "start")
    assert p.returncode == 0, p.stdout + p.stderr
    rec = json.loads((tmp_path / "run" / "vm.json").read_text())
    runs = [r for r in Path("/tmp").glob("vm-run.*")  # the killed vm-run's own directory
            if (r / "owner").is_file() and (r / "owner").read_text().split()[0] == str(rec["pid"])]
    assert len(runs) == 1, runs
    os.kill(rec["pid"], signal.SIGKILL)  # vm-run only: its qemu lives on, its trap never runs
    p = _drlab(env, "vm", "status")
    assert p.returncode == 1 and "is gone" in p.stdout
    assert runs[0].exists()
    p = _drlab(env, "cleanup")
    assert p.returncode == 0, p.stdout + p.stderr
    assert _marked(d) == [] and not d.exists()
    assert f"removed {d}" in p.stdout
    assert not runs[0].exists() and f"removed {runs[0]}" in p.stdout, p.stdout


def test_vm_start_waits_while_the_boot_makes_progress_and_keeps_its_console(tmp_path):
    """A boot whose console grows is waited for beyond the stall bound; once it stops
    growing, vm start gives up after the bound (scaled here: 0.02 x 180 s = 3.6 s) with
    the console's last lines, kept after the VM's directory is gone."""
    import time

    images = sorted(Path("/boot").glob("vmlinuz-*"))
    if not images:
        pytest.skip("no /boot/vmlinuz-* (scripts/bootstrap --vm installs one)")
    vng = tmp_path / "vng"  # a boot that prints for 6 s, then hangs
    vng.write_text("#!/bin/sh\nfor i in 1 2 3 4 5 6 7 8 9 10 11 12; do\n"
                   "  echo \"fake boot line $i\"; sleep 0.5\ndone\nexec sleep 600\n")
    vng.chmod(0o755)
    env = {**_env(tmp_path), "DRLAB_TIMEOUT_SCALE": "0.02", "DRLAB_VNG": str(vng)}
    t0 = time.monotonic()
    p = _drlab(env, "vm", "start", "--accel", "tcg", "--kernel", str(images[-1]), timeout=60)
    took = time.monotonic() - t0
    assert p.returncode == 3, p.stdout + p.stderr
    err = p.stderr.splitlines()[-1]
    assert "Traceback" not in p.stderr and err.startswith(
        "drlab: error: the VM made no progress for 4 s (its server never started; up "), err
    assert "fake boot line 12" in err and str(tmp_path / "run" / "vm-console.log") in err, err
    assert 6 < took < 30, took
    assert "fake boot line 12" in (tmp_path / "run" / "vm-console.log").read_text()
    assert not (tmp_path / "run" / "vm").exists()
    assert not (tmp_path / "run" / "vm.json").exists()


@pytest.fixture(autouse=True)
def _nothing_left(tmp_path):
    yield
    left = _marked(tmp_path / "run" / "vm")
    for line in left:
        os.kill(int(line.split()[0]), signal.SIGKILL)
    assert left == []
