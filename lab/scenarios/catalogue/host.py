"""Host: what the machine around the lab does to it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from lab.builder import Lab, sysctl
from lab.model import default_dr
from lab.scenarios.base import Outcome, Scenario, Variant, register


@contextlib.contextmanager
def _host_rp_filter(variant: Variant) -> Iterator[None]:
    """Set rp_filter=2 in the (disposable) root namespace while a variant is built,
    as systemd's 50-default.conf does on many hosts; restore it afterwards."""
    keys = ["/proc/sys/net/ipv4/conf/all/rp_filter", "/proc/sys/net/ipv4/conf/default/rp_filter"]
    old = [open(k).read().strip() for k in keys]
    try:
        for k in keys:
            with open(k, "w") as f:
                f.write("2")
        yield
    finally:
        for k, v in zip(keys, old, strict=True):
            with open(k, "w") as f:
                f.write(v)


def _inheritance(lab: Lab, variant: Variant) -> Outcome:
    got = sysctl.read(lab.ns("rs1"), ["net.ipv4.conf.all.rp_filter",
                                      "net.ipv4.conf.eth0.rp_filter"])
    ev = ["root namespace had rp_filter=2 while the lab was built; rs1 has "
          + ", ".join(f"{k}={v}" for k, v in got.items())]
    return Outcome(got["net.ipv4.conf.all.rp_filter"] == "2", ev)


register(Scenario(
    name="sysctl-inheritance",
    symptom="namespaces (containers, labs) have ARP/rp_filter values nobody set in them",
    trigger="a new namespace copies conf/all and conf/default from the host's initial "
            "namespace (devconf_inherit_init_net=0)",
    fix="write every knob in every namespace (the lab pins them; the broken variant is a naive "
        "lab that does not)",
    broken=lambda: default_dr(rs=1),
    fixed=lambda: default_dr(rs=1),
    observe=_inheritance,
    needs_ipvs=False, services=False, naive_broken=True, needs_vm=True,
    around=_host_rp_filter,
    stimulus="a naive lab built while the host has rp_filter=2, in the VM",
    source="Documentation/networking/ip-sysctl.rst (devconf_inherit_init_net)",
))
