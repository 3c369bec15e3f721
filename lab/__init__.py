"""lvs-dr-lab: LVS Direct Routing labs in network namespaces, proven packet by packet.

Layers, bottom up; each imports only the ones below it (checked by
``lint-imports``, the contract is in pyproject.toml), and ``errors`` and
``util`` are the floor every layer may use:

* ``lab.model``     pure data: topologies, validation, defaults, TOML files, and
                    the predictor of real-server ARP/DR and director behaviour.
* ``lab.builder``   model -> namespaces, bridges, veths, addresses, routes, pinned
                    sysctls (netlink); ownership records and reaping.
* ``lab.machine``      the machine around the labs: preflight checks, and the root
                    namespace snapshot that proves the lab left it alone.
* ``lab.wire``      frames by hand (ARP, ICMP echo, NDP, a small decoder) and
                    packet sockets inside a lab host.
* ``lab.roles``     what runs on the hosts: the IPVS director (ipvsadm), the real
                    servers' identity service, the client; ``up()`` starts them.
* ``lab.probes``    what the kernel did: census, captures, the DR path proof,
                    counters, state dumps, ``check()`` of a running lab.
* ``lab.scenarios`` the catalogue of DR failures, broken and fixed; ``validate``.
* ``lab.sweep``     many labs: the matrix, kernels, benchmarks, flake hunting.
* ``lab.report``    text and HTML reports, topology drawings.
* ``lab.cli`` / ``lab.pytest_plugin``  the ``drlab`` command and the fixtures.
"""

from lab.errors import LabError, PreflightError, TopologyError

__all__ = ["LabError", "PreflightError", "TopologyError"]
__version__ = "0.1.0"
