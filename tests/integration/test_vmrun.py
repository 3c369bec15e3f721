"""scripts/vm-run --accel: KVM when a bounded test boot works, software emulation
otherwise, the verdict cached and printed. A fake virtme-ng (DRLAB_VNG) stands in
for qemu so that a hanging KVM guest can be made on purpose."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: A virtme-ng whose KVM boot hangs (it keeps its arguments, as qemu does, so that
#: vm-run can find it) and whose software-emulated boot fails at once.
FAKE_VNG = """#!/bin/bash
case " $* " in
  *" --disable-kvm "*) echo "fake vng: no VM here" >&2; exit 1 ;;
esac
echo "$*" >>"$FAKE_LOG"
exec python3 -c 'import time; time.sleep(600)' "$@"
"""


def _kernel() -> str:
    images = sorted(Path("/boot").glob("vmlinuz-*"))
    if not images:
        pytest.skip("no /boot/vmlinuz-* (scripts/bootstrap --vm installs one)")
    return str(images[-1])


def _vm_run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "DRLAB_VNG": str(tmp_path / "vng"),
           "DRLAB_ACCEL_CACHE": str(tmp_path / "drlab" / "accel"),
           "DRLAB_KVM_PROBE_SECONDS": "3", "FAKE_LOG": str(tmp_path / "calls")}
    env.pop("DRLAB_ACCEL", None)
    t0 = time.monotonic()
    p = subprocess.run([str(REPO / "scripts/vm-run"), "--force-vm", "--kernel", _kernel(),
                        *args, "--", "true"], capture_output=True, text=True, env=env,
                       timeout=60)
    return p, time.monotonic() - t0


def test_auto_falls_back_to_software_emulation_within_its_bound_and_remembers(tmp_path):
    vng = tmp_path / "vng"
    vng.write_text(FAKE_VNG)
    vng.chmod(0o755)
    p, took = _vm_run(tmp_path)
    assert p.returncode == 125, p.stderr  # the fake's emulated boot fails: "the VM failed"
    usable = os.access("/dev/kvm", os.R_OK | os.W_OK)
    if usable:
        assert "probing KVM with a test boot" in p.stderr
        assert "with software emulation (the KVM test boot hung; given up after" in p.stderr
        assert took < 3 + 10  # the probe's bound plus the fake's failing boot
        cached = list((tmp_path / "drlab" / "accel").iterdir())
        assert [c.read_text() for c in cached] == ["tcg\n"]
        # nothing of the hung guest is left
        left = subprocess.run(["pgrep", "-f", "vm-probe"], capture_output=True, text=True)
        assert str(tmp_path) not in left.stdout
        assert not any(Path("/tmp").glob("vm-probe.*/ok"))
        # the second run asks the cache, not /dev/kvm
        p, _ = _vm_run(tmp_path)
        assert "probing" not in p.stderr and "(verdict cached in " in p.stderr
        assert (tmp_path / "calls").read_text().count("--exec touch") == 1
    else:
        assert "with software emulation (no usable /dev/kvm)" in p.stderr
    # asked for by name: no probe
    p, _ = _vm_run(tmp_path, "--accel", "tcg")
    assert "with software emulation (--accel tcg)" in p.stderr and "probing" not in p.stderr


def test_a_bad_accel_is_exit_2(tmp_path):
    p = subprocess.run([str(REPO / "scripts/vm-run"), "--accel", "fast", "--", "true"],
                       capture_output=True, text=True, timeout=30)
    assert (p.returncode, p.stderr) == (2, "vm-run: --accel fast: give auto, kvm or tcg\n")


def test_kernels_run_boots_a_dying_vm_again_twice_then_reports_it(tmp_path):
    """A VM that dies under the command (vm-run's exit 125) is booted again, up to
    twice, each attempt's log kept; then the kernel is reported with no result."""
    import json

    kernel = _kernel()
    if not (Path("/lib/modules") / Path(kernel).name.removeprefix("vmlinuz-")).is_dir():
        pytest.skip(f"no modules for {kernel} (scripts/bootstrap --vm installs them)")
    vng = tmp_path / "vng"
    vng.write_text("#!/bin/sh\necho 'fake vng: the guest died' >&2\nexit 1\n")
    vng.chmod(0o755)
    env = {**os.environ, "DRLAB_VNG": str(vng), "DRLAB_ACCEL": "tcg"}
    out, logs = tmp_path / "k.json", tmp_path / "logs"
    p = subprocess.run([sys.executable, "-m", "lab", "kernels", "run", "--kernel",
                        f"dies={kernel}", "--json", str(out), "--logs", str(logs),
                        "matrix", "--arp-ignore", "0"], capture_output=True, text=True,
                       env=env, timeout=120, cwd=REPO)
    assert p.returncode == 1, p.stdout + p.stderr
    assert p.stderr.count("the VM died before the command finished") == 2
    [k] = json.loads(out.read_text())["kernels"]
    assert k["retried"] and "no result (exit 125, the VM failed" in k["error"]
    assert sorted(x.name for x in logs.iterdir()) == ["dies.attempt-1.log",
                                                      "dies.attempt-2.log", "dies.log"]


def test_an_interrupt_ends_the_vms_session_and_nothing_else(tmp_path):
    """Ctrl-C (SIGINT) to vm-run ends every process of the VM (virtme-ng's session:
    here a fake and its child, whose command lines do not name vm-run's directory) and
    no process of another user's whose command line names it."""
    import shutil
    import signal

    from lab.util import wait_for

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to act as nobody")
    mark = f"drlab-fake-qemu-{os.getpid()}"
    vng = tmp_path / "vng"
    vng.write_text("#!/bin/sh\n"
                   f"python3 -c 'import time; time.sleep(600)' {mark}-child &\n"
                   f"exec python3 -c 'import time; time.sleep(600)' {mark}\n")
    vng.chmod(0o755)

    def fakes() -> list[str]:
        p = subprocess.run(["pgrep", "-f", mark], capture_output=True, text=True)
        return p.stdout.split()

    env = {**os.environ, "DRLAB_VNG": str(vng)}
    vm = subprocess.Popen([str(REPO / "scripts/vm-run"), "--force-vm", "--accel", "tcg",
                           "--kernel", _kernel(), "--", "true"], env=env,
                          stderr=subprocess.PIPE, text=True)
    theirs = None
    try:
        wait_for(lambda: len(fakes()) == 2, 30, "the fake VM to run")
        [run] = [d for d in Path("/tmp").glob("vm-run.*")
                 if (d / "owner").is_file() and (d / "owner").read_text().split()[0] == str(vm.pid)]
        theirs = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup",
                                   "--clear-groups", "/usr/bin/python3", "-c",
                                   "import time; time.sleep(600)", str(run)])
        wait_for(lambda: str(run).encode() in Path(f"/proc/{theirs.pid}/cmdline").read_bytes(),
                 10, "nobody's process to start")
        vm.send_signal(signal.SIGINT)
        _, err = vm.communicate(timeout=30)
        assert vm.returncode == 130 and "vm-run: interrupted: VM stopped" in err, err
        wait_for(lambda: not fakes(), 5, "the fake VM's processes to end")
        assert theirs.poll() is None  # named the directory; not the VM's: alive
        assert not run.exists()
    finally:
        for pid in fakes():
            os.kill(int(pid), signal.SIGKILL)
        if vm.poll() is None:
            vm.kill()
        if theirs is not None:
            theirs.kill()
            theirs.wait()


#: A virtme-ng whose guest "ran" CMD: it writes CMD's exit code ($FAKE_RC) and the
#: guest's kernel log ($FAKE_DMESG) where vm-run's guest script would.
FAKE_GUEST = """#!/bin/bash
while [[ $# -gt 0 ]]; do
  [[ $1 == --exec ]] && { g=${2#bash }; d=${g%/guest.sh}; }
  shift
done
printf '%s' "$FAKE_DMESG" >"$d/dmesg"
[[ -n ${FAKE_LOG:-} ]] && cp "$d/guest.sh" "$FAKE_LOG"
echo "$FAKE_RC" >"$d/rc"
"""

CLEAN_LOG = "[    0.000000] Linux version 6.1.0\n[    4.900216] 9p: Installing v9fs\n"
WARNED_LOG = CLEAN_LOG + ("[   12.000001] WARNING: CPU: 1 PID: 77 at net/netfilter/ipvs/"
                          "ip_vs_conn.c:99 ip_vs_conn_new+0x1/0x2 [ip_vs]\n"
                          "[   12.000002] Call Trace:\n[   12.000003]  <TASK>\n"
                          "[   12.000004] ---[ end trace 0000000000000000 ]---\n"
                          "[   13.000000] eth0: link up\n")


def _guest(tmp_path: Path, rc: int, log: str, *args: str,
           **env: str) -> subprocess.CompletedProcess:
    vng = tmp_path / "vng"
    vng.write_text(FAKE_GUEST)
    vng.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k != "DRLAB_ALLOW_KERNEL_WARNINGS"}
    env = {**base, "DRLAB_VNG": str(vng), "DRLAB_ACCEL": "tcg", "FAKE_RC": str(rc),
           "FAKE_DMESG": log, **env}
    return subprocess.run([str(REPO / "scripts/vm-run"), "--force-vm", "--kernel", _kernel(),
                           *args, "--", "true"], capture_output=True, text=True, env=env,
                          timeout=60)


def test_a_kernel_warning_fails_a_clean_command_and_shows_its_excerpt(tmp_path):
    """The guest's kernel log is a verdict: clean, CMD's code; a WARNING with CMD's
    success, 124 and the excerpt (to the end of its trace); CMD's own failure wins;
    --allow-kernel-warnings (or its variable) keeps CMD's code; --kernel-warnings
    FILE gets the excerpt."""
    p = _guest(tmp_path, 0, CLEAN_LOG)
    assert p.returncode == 0 and "kernel warned" not in p.stderr, p.stderr
    p = _guest(tmp_path, 0, WARNED_LOG)
    assert p.returncode == 124, p.stderr
    assert "vm-run: the kernel warned (1 in its log: warning):" in p.stderr
    assert "  WARNING: CPU: 1 PID: 77 at net/netfilter/ipvs/ip_vs_conn.c:99" in p.stderr
    assert "  ---[ end trace 0000000000000000 ]---" in p.stderr
    assert "eth0: link up" not in p.stderr  # after its trace's end: not its excerpt
    assert "CMD succeeded, but the kernel warned: exit 124" in p.stderr
    assert _guest(tmp_path, 3, WARNED_LOG).returncode == 3
    p = _guest(tmp_path, 0, WARNED_LOG, "--allow-kernel-warnings")
    assert p.returncode == 0 and "kernel warnings allowed" in p.stderr, p.stderr
    p = _guest(tmp_path, 0, WARNED_LOG, DRLAB_ALLOW_KERNEL_WARNINGS="1")
    assert p.returncode == 0 and "the kernel warned" in p.stderr, p.stderr
    kw = tmp_path / "kw"
    p = _guest(tmp_path, 0, WARNED_LOG, "--kernel-warnings", str(kw))
    assert p.returncode == 124 and "ip_vs_conn_new" in kw.read_text()


def test_kernels_run_reports_a_kernel_that_warned_as_its_error(tmp_path):
    """`kernels run`: a kernel whose log has a warning is that kernel's error, with the
    excerpt; with DRLAB_ALLOW_KERNEL_WARNINGS=1 it is not."""
    import json

    kernel = _kernel()
    if not (Path("/lib/modules") / Path(kernel).name.removeprefix("vmlinuz-")).is_dir():
        pytest.skip(f"no modules for {kernel} (scripts/bootstrap --vm installs them)")
    vng = tmp_path / "vng"
    vng.write_text(FAKE_GUEST)
    vng.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k != "DRLAB_ALLOW_KERNEL_WARNINGS"}
    env = {**base, "DRLAB_VNG": str(vng), "DRLAB_ACCEL": "tcg", "FAKE_RC": "0",
           "FAKE_DMESG": WARNED_LOG}

    def run(**more: str) -> dict:
        out = tmp_path / "k.json"
        out.unlink(missing_ok=True)
        p = subprocess.run([sys.executable, "-m", "lab", "kernels", "run", "--kernel",
                            f"warns={kernel}", "--json", str(out), "matrix",
                            "--arp-ignore", "0"], capture_output=True, text=True,
                           env={**env, **more}, timeout=120, cwd=REPO)
        assert p.returncode == 1, p.stdout + p.stderr  # the fake guest gives no result
        [k] = json.loads(out.read_text())["kernels"]
        return k

    k = run()
    assert "the kernel warned (1 in its log: warning):" in k["error"], k
    assert "ip_vs_conn_new" in k["error"] and "(exit 124)" in k["error"]
    k = run(DRLAB_ALLOW_KERNEL_WARNINGS="1")
    assert "kernel warned" not in k["error"] and "no result (exit 0" in k["error"], k


def test_a_real_vm_run_fails_on_a_planted_kernel_warning_and_passes_clean(tmp_path):
    """Two real boots (no fake virtme-ng): a command that plants a WARNING in the
    guest's /dev/kmsg and succeeds ends with 124 and the excerpt; `true` ends with 0
    (the boot's own log under software emulation has nothing that fails a run)."""
    kernel = _kernel()
    if not (Path("/lib/modules") / Path(kernel).name.removeprefix("vmlinuz-")).is_dir():
        pytest.skip(f"no modules for {kernel} (scripts/bootstrap --vm installs them)")
    env = {k: v for k, v in os.environ.items()
           if k not in ("DRLAB_VNG", "DRLAB_ALLOW_KERNEL_WARNINGS")}

    def run(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(REPO / "scripts/vm-run"), "--force-vm", "--kernel", kernel,
                               "--", *cmd], capture_output=True, text=True, env=env,
                              timeout=600)

    # and the VM server's reader of /dev/kmsg (lab.machine.dmesg.kmsg_records) finds it, once
    check = ("from lab.machine.dmesg import kmsg_records, scan\n"
             "msgs, last = kmsg_records()\n"
             "assert [f.line for f in scan(msgs)] == ['WARNING: drlab planted'], msgs\n"
             "assert kmsg_records(last) == ([], last)\n")
    p = run("sh", "-c", "echo '<4>WARNING: drlab planted' >/dev/kmsg && exec \"$0\" -c \"$1\"",
            sys.executable, check)
    assert p.returncode == 124, p.stderr
    assert "vm-run: the kernel warned (1 in its log: warning):" in p.stderr
    assert "  WARNING: drlab planted" in p.stderr
    p = run("true")
    assert p.returncode == 0 and "kernel warned" not in p.stderr, p.stderr


def test_scripts_drlab_refuses_a_file_a_one_shot_vm_would_lose(tmp_path):
    """scripts/drlab on a kernel without IPVS, no VM running: a file outside the
    repository (or a relative one from a directory outside it) is refused before a VM
    boots (exit 2, one line); one under the repository is not, and the command runs in
    the directory it was given from."""
    if Path("/proc/net/ip_vs").exists():
        pytest.skip("this kernel has IPVS: scripts/drlab boots no VM")
    vng = tmp_path / "vng"
    vng.write_text(FAKE_GUEST)
    vng.chmod(0o755)
    env = {**os.environ, "DRLAB_VNG": str(vng), "DRLAB_ACCEL": "tcg", "FAKE_RC": "0",
           "FAKE_DMESG": CLEAN_LOG, "FAKE_LOG": str(tmp_path / "guest.sh"),
           "DRLAB_RUN_DIR": str(tmp_path / "run")}

    def drlab(cwd: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(REPO / "scripts/drlab"), *args], capture_output=True,
                              text=True, env=env, cwd=cwd, timeout=120)

    for cwd, path in ((REPO, "/tmp/diag.html"), (tmp_path, "diag.html")):
        p = drlab(cwd, "diagnose", "c.toml", "--html", path)
        assert p.returncode == 2 and p.stderr.startswith(
            f"drlab: error: --html {path}: this command runs in a VM, which writes files "
            f"through to this host only under {REPO}; "), p.stderr
        assert p.stderr.count("\n") == 1 and not (tmp_path / "guest.sh").exists()
    p = drlab(REPO / "lab", "diagnose", "c.toml", "--html", "../diag.html")
    assert p.returncode == 0, p.stderr  # the fake guest's "exit code"
    assert f"cd {REPO / 'lab'} ||" in (tmp_path / "guest.sh").read_text()
