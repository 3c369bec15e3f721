"""Roles: what runs on the lab's hosts (director, real servers, client).

:func:`up` is the usual entry point: build a topology and start every role.
"""

from __future__ import annotations

from collections.abc import Callable

from lab.builder import Lab
from lab.model import Topology


def up(topology: Topology, *, name: str | None = None, persistent: bool = False,
       ipvs: bool = True, services: bool = True, pin_sysctls: bool = True,
       on_built: Callable[[Lab], None] | None = None) -> Lab:
    """Build ``topology``, load its IPVS service on the director (``ipvs``) and
    start the real servers' identity services (``services``). Tears down
    whatever was made on failure. ``on_built(lab)`` runs between the build and
    the roles (the pytest plugin starts its packet recorder there)."""
    # lazy: importing lab.roles.director alone would load the other roles (+3 modules, ~7 ms)
    from lab.roles import director, keepalived, realserver

    managed = bool(topology.keepalived)
    if managed:
        keepalived.refuse_scripts(topology)  # before anything is built
    lab = Lab(topology, name=name, persistent=persistent, pin_sysctls=pin_sysctls).build()
    try:
        if on_built is not None:
            on_built(lab)
        if topology.service is not None:
            if ipvs and not managed:  # keepalived loads its own virtual_server
                director.configure(lab)
            if services:
                realserver.start_services(lab)
        if managed and ipvs:  # after the services: its first health checks pass
            keepalived.start_all(lab)
    except BaseException:
        lab.teardown()
        raise
    return lab


__all__ = ["up"]
