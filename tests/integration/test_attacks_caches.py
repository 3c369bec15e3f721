"""Root's caches (Debian kernels: lab.sweep.kernels; the KVM verdict: scripts/vm-run)
are root's own, checked, never under $HOME (sudo may keep the user's) and never
through a link another user (``nobody``) put there. No VM boots: a fake virtme-ng
stands in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.subprocess,
              pytest.mark.skipif(os.geteuid() != 0, reason="root's caches: needs root")]


def _nobody_uid() -> int:
    import pwd

    return pwd.getpwnam("nobody").pw_uid


@pytest.fixture
def home() -> Iterator[Path]:
    """nobody's home, where root's $HOME points (sudo kept it): its .cache/drlab is a
    link to a directory root made (a target nobody chose)."""
    d = Path(tempfile.mkdtemp(prefix="drlab-home."))
    d.chmod(0o755)
    target = Path(tempfile.mkdtemp(prefix="drlab-target."))
    (d / ".cache").mkdir()
    (d / ".cache" / "drlab").symlink_to(target)
    for p in (d / ".cache", d / ".cache" / "drlab", d):
        os.lchown(p, _nobody_uid(), -1)
    yield d
    shutil.rmtree(d)
    shutil.rmtree(target)


def _env(home: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("XDG_CACHE_HOME", "DRLAB_KERNEL_CACHE", "DRLAB_ACCEL_CACHE")}
    return {**env, "HOME": str(home), **more}


def _target(home: Path) -> Path:
    return (home / ".cache" / "drlab").resolve()


def test_roots_kernel_cache_is_not_under_home(home, tmp_path):
    p = subprocess.run([sys.executable, "-m", "lab", "kernels", "list"], capture_output=True,
                       text=True, env=_env(home), cwd=REPO, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("kernel cache /var/cache/drlab/kernels: "), p.stdout
    st = os.lstat("/var/cache/drlab/kernels")
    assert st.st_uid == 0 and st.st_mode & 0o077 == 0
    # an explicit cache that is a link (to where root would then write) is one line
    link = tmp_path / "kernels"
    link.symlink_to(_target(home))
    p = subprocess.run([sys.executable, "-m", "lab", "kernels", "list"], capture_output=True,
                       text=True, env=_env(home, DRLAB_KERNEL_CACHE=str(link)), cwd=REPO,
                       timeout=60)
    assert (p.returncode, p.stderr) == (
        2, f"drlab: error: {link} is a symbolic link, not a directory of its own: remove it "
           "(root does not write through links)\n")
    assert list(_target(home).iterdir()) == []


def _vm_run(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    images = sorted(Path("/boot").glob("vmlinuz-*"))
    if not images:
        pytest.skip("no /boot/vmlinuz-* (scripts/bootstrap --vm installs one)")
    vng = tmp_path / "vng"
    vng.write_text("#!/bin/sh\nexit 1\n")  # KVM's test boot fails, and so does the VM
    vng.chmod(0o755)
    env = {**env, "DRLAB_VNG": str(vng), "DRLAB_KVM_PROBE_SECONDS": "3"}
    env.pop("DRLAB_ACCEL", None)
    return subprocess.run([str(REPO / "scripts/vm-run"), "--force-vm", "--kernel",
                           str(images[-1]), "--", "true"], capture_output=True, text=True,
                          env=env, timeout=60)


def test_roots_kvm_verdict_is_not_written_under_home_nor_through_a_link(home, tmp_path):
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("no usable /dev/kvm: vm-run caches no verdict")
    mine = tmp_path / "accel"
    p = _vm_run(_env(home, DRLAB_ACCEL_CACHE=str(mine)), tmp_path)
    assert p.returncode == 125 and f"cached in {mine}/" in p.stderr, p.stderr
    assert list(_target(home).iterdir()) == []  # nothing through nobody's link
    assert [x.read_text() for x in mine.iterdir()] == ["tcg\n"]
    assert os.lstat(mine).st_mode & 0o777 == 0o700
    link = tmp_path / "accel-link"
    link.symlink_to(_target(home))
    p = _vm_run(_env(home, DRLAB_ACCEL_CACHE=str(link)), tmp_path)
    assert (p.returncode, p.stderr) == (
        2, f"vm-run: the KVM verdict's cache: {link} is a link or not a directory\n")
    assert list(_target(home).iterdir()) == []
