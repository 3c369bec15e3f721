"""Sysctls: what the lab pins in every namespace, and how it reads them back.

A new network namespace copies ``conf/all`` and ``conf/default`` from the
host (``net.core.devconf_inherit_init_net=0``), so a lab that leaves a knob
alone inherits whatever the host happens to have. The lab therefore writes
every knob DR depends on, on ``all``, ``default`` and each interface
(``lo`` included), in every namespace it makes, then applies the topology's
own values on top.

For arp_ignore, arp_announce and rp_filter the kernel uses the *maximum* of
``all`` and the interface's value; :func:`effective` computes that.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from lab.builder import netns
from lab.model.predict import MAX_OF_ALL_AND_DEV

#: Per-interface knobs pinned on all/default/<each interface>, with the value
#: the lab pins (the kernel's own defaults, so a lab is the same on any host).
PINNED_CONF: dict[str, str] = {
    "arp_ignore": "0",
    "arp_announce": "0",
    "arp_filter": "0",
    "rp_filter": "0",
    "forwarding": "0",
    "accept_redirects": "0",
    "send_redirects": "0",
    "accept_local": "0",
}


def key_path(key: str) -> str:
    """``net.ipv4.conf.eth0.arp_ignore`` -> ``sys/net/ipv4/conf/eth0/arp_ignore``.

    Interface names may contain dots; sysctl(8) writes those as ``/``. We only
    allow names without ``/``, so the device part is the 4th component of a
    ``net.ipvX.conf.DEV.KNOB`` key.
    """
    parts = key.split(".")
    if len(parts) >= 5 and parts[2] == "conf":
        dev = ".".join(parts[3:-1])
        return "/".join(["sys", parts[0], parts[1], "conf", dev, parts[-1]])
    return "sys/" + key.replace(".", "/")


def plan(interfaces: Iterable[str], overrides: Mapping[str, str]) -> list[tuple[str, str]]:
    """The ordered list of (key, value) writes for one namespace.

    ``all`` first (writing ``all.forwarding`` resets every device's
    forwarding), then ``default``, then each interface, then the
    topology's overrides in a stable order: ``all`` keys before device keys,
    so that an override on a device is not undone by one on ``all``.
    """
    devs = ["all", "default", "lo", *interfaces]
    writes = [(f"net.ipv4.conf.{d}.{k}", v) for d in devs for k, v in PINNED_CONF.items()]

    def order(kv: tuple[str, str]) -> tuple[int, str]:
        k = kv[0]
        return (0 if ".conf.all." in k else 1 if ".conf.default." in k else 2, k)

    writes = [(k, v) for k, v in writes if k not in overrides]
    return writes + sorted(((k, str(v)) for k, v in overrides.items()), key=order)


def write(ns: str, writes: Iterable[tuple[str, str]]) -> None:
    """Write sysctls inside namespace ``ns``; errors name the key and value."""
    with netns.entered(ns):
        for key, value in writes:
            try:  # (no file object: a lab makes hundreds of these writes)
                fd = os.open("/proc/" + key_path(key), os.O_WRONLY)
                try:
                    os.write(fd, str(value).encode())
                finally:
                    os.close(fd)
            except OSError as e:
                raise OSError(e.errno, f"sysctl {key}={value} in {ns}: {e.strerror}") from None


def read(ns: str, keys: Iterable[str]) -> dict[str, str]:
    out = {}
    with netns.entered(ns):
        for key in keys:
            with open("/proc/" + key_path(key)) as f:
                out[key] = f.read().strip()
    return out


def effective(values: Mapping[str, str], dev: str, knob: str) -> int:
    """The value the kernel acts on for ``knob`` on ``dev``, given all/dev values."""
    dev_v = int(values[f"net.ipv4.conf.{dev}.{knob}"])
    if knob in MAX_OF_ALL_AND_DEV:
        return max(int(values[f"net.ipv4.conf.all.{knob}"]), dev_v)
    return dev_v
