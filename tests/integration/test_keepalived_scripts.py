"""A keepalived.conf someone handed in (a topology file, a collected directory) runs
no one's commands as root: real keepalived (Debian's), VRRP only, so it runs on the
host's kernel without IPVS. The marker a notify script would write is the evidence."""

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from lab.errors import TopologyError
from lab.model import load_topology, topology_from_dict, topology_to_dict
from lab.model.keepalived import keepalived_dr
from lab.model.writer import to_toml
from lab.roles import keepalived

pytestmark = pytest.mark.netns


@pytest.fixture
def spot():
    """A directory only root writes, with a subdirectory anyone may write (where a
    script run as ``nobody`` leaves its mark) and a notify script that records the uid
    it ran as."""
    if shutil.which("keepalived") is None:
        pytest.skip("keepalived is not installed (scripts/bootstrap installs it)")
    d = Path(tempfile.mkdtemp(prefix="drlab-ka-"))
    try:
        d.chmod(0o755)
        (d / "out").mkdir(mode=0o777)
        (d / "out").chmod(0o1777)
        script = d / "mark.sh"
        script.write_text(f'#!/bin/sh\nid -u >> "{d}/out/ran"\n')
        script.chmod(0o755)
        yield d
    finally:
        shutil.rmtree(d)


def vrrp_only(script: Path) -> str:
    """One director's VRRP, no virtual_server (no IPVS needed), a notify script at
    MASTER, and the lab's old habit of running scripts as root."""
    return f"""global_defs {{
    router_id lb1
    script_user root
}}
vrrp_instance VI_1 {{
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    notify_master "{script}"
    virtual_ipaddress {{
        192.0.2.100/32 dev eth0
    }}
}}
"""


def cluster_toml(tmp_path: Path, spot: Path) -> Path:
    t = keepalived_dr(rs=1, sync=False, check=None)
    data = topology_to_dict(t)
    data["keepalived"] = {"director": vrrp_only(spot / "mark.sh")}
    path = tmp_path / "cluster.toml"
    path.write_text(to_toml(data))
    return path


def run_director(lab_factory, t):
    lab = lab_factory(t, roles=False)
    keepalived.start(lab, "director")
    # the lab's own reporter still works under enable_script_security
    keepalived.wait_state(lab, "director", "MASTER")
    return lab


def test_a_topology_files_notify_script_does_not_run(lab_factory, tmp_path, spot):
    path = cluster_toml(tmp_path, spot)
    notes: list[str] = []
    t = load_topology(path, notes=notes)
    lab = run_director(lab_factory, t)
    assert notes == [f"{path} [keepalived.director]:11: notify_master removed: no action "
                     "when the VRRP instance or group changes state (--allow-scripts keeps "
                     "it)"]
    keepalived.stop(lab, "director")
    assert not (spot / "out" / "ran").exists()
    conf = keepalived.paths(lab, "director").conf.read_text()
    assert "script_user nobody" in conf and "script_user root" not in conf


def test_allowed_scripts_run_as_nobody_not_root(lab_factory, tmp_path, spot):
    t = load_topology(cluster_toml(tmp_path, spot), allow_scripts=True)
    lab = run_director(lab_factory, t)
    ran = spot / "out" / "ran"
    from lab.util import wait_for

    wait_for(ran.exists, 10, "the notify script to run")
    keepalived.stop(lab, "director")
    assert ran.read_text().split() == [str(pwd.getpwnam("nobody").pw_uid)]
    assert os.stat(ran).st_uid != 0


def test_the_role_refuses_a_script_that_bypassed_the_loader(lab_factory, tmp_path, spot):
    import tomllib

    data = tomllib.loads(cluster_toml(tmp_path, spot).read_text())
    t = topology_from_dict(data)  # not load_topology: nothing stripped
    lab = lab_factory(t, roles=False)
    with pytest.raises(TopologyError, match=r"keepalived\.director:11: notify_master would "
                                            "run on the lab's machine as root"):
        keepalived.start(lab, "director")
    assert keepalived.pid(lab, "director") is None
    assert not (spot / "out" / "ran").exists()
