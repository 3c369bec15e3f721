"""The check that guards the host, as a user first meets it: ``sudo pytest`` on a fresh
machine, the README's "Writing a test" example in the user's own directory.

On a fresh machine ``ip_vs`` is not loaded: the session starts with no IPVS table and
its first IPVS test loads the module (an empty table). That is not a change; a
service added to the root namespace's table still is.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ipvs, pytest.mark.rootns, pytest.mark.subprocess]


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Writing a test"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    return code.group(1)


def inner_pytest(directory: Path) -> subprocess.CompletedProcess:
    """``pytest`` in ``directory`` (outside the repository), as a user runs it."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTEST_XDIST_WORKER", "DRLAB_WORKER", "PYTEST_ADDOPTS")
           and not k.startswith("PYTEST_XDIST")}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
                          cwd=directory, env=env, capture_output=True, text=True, timeout=1800)


def ipvs_modules() -> list[str]:
    """The loaded ip_vs modules, the schedulers before ip_vs (the order to remove them)."""
    with open("/proc/modules") as f:
        mods = [line.split()[0] for line in f if line.startswith("ip_vs")]
    return sorted(mods, key=lambda m: m == "ip_vs")


def root_ipvs_table() -> str:
    return subprocess.run(["ipvsadm", "-Sn"], capture_output=True, text=True,
                          check=True).stdout


def test_loading_ip_vs_is_not_a_change_but_a_root_service_is(drlab_ipvs, tmp_path):
    assert root_ipvs_table() == "", "the root namespace has IPVS services: not touching them"
    loaded = ipvs_modules()
    in_vm = os.environ.get("DRLAB_IN_VM") == "1"
    if in_vm:  # a throw-away VM: start as a fresh machine does, without ip_vs
        # (it stays loaded while another test process's lab uses it: --drlab-forks)
        r = subprocess.run(["modprobe", "-r", *loaded], capture_output=True)
        assert r.returncode != 0 or not os.path.exists("/proc/net/ip_vs")
    # (elsewhere the module stays as it is: a fresh start needs a machine of our own)
    try:
        (tmp_path / "readme").mkdir()
        (tmp_path / "readme" / "test_example.py").write_text(readme_example())
        p = inner_pytest(tmp_path / "readme")
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        assert "2 passed" in p.stdout and "root namespace" not in p.stdout

        (tmp_path / "service").mkdir()
        (tmp_path / "service" / "test_service.py").write_text(
            "import subprocess\n\n"
            "def test_adds_a_root_service():\n"
            "    subprocess.run(['ipvsadm', '-A', '-t', '192.0.2.7:80', '-s', 'rr'],"
            " check=True)\n")
        p = inner_pytest(tmp_path / "service")
        assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
        assert "1 passed" in p.stdout
        assert ("drlab: the session changed the host's root namespace: "
                "ipvs: added TCP 192.0.2.7:80 rr") in p.stdout
    finally:
        subprocess.run(["ipvsadm", "-C"], check=True)
        for m in loaded:
            subprocess.run(["modprobe", m], check=True)
