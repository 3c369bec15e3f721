"""lvs-dr-lab: LVS Direct Routing labs in network namespaces, proven packet by packet.

Layers, bottom up (one sub-package each):

* ``lab.model``    - the topology model: hosts, segments, addresses, the virtual
                     service, sysctls; validation; default topologies; TOML files.
* ``lab.builder``  - turns a model into namespaces, bridges and veths (netlink),
                     pins sysctls, records ownership and reaps dead runs.
* ``lab.roles``    - what runs on the hosts: the IPVS director (ipvsadm), the
                     real servers' identity service, the client.
* ``lab.probes``   - observation: kernel counters, IPVS connections.
* ``lab.cli`` / ``lab.pytest_plugin`` - the ``drlab`` command and the fixtures.
"""

from lab.errors import LabError, PreflightError, TopologyError

__all__ = ["LabError", "PreflightError", "TopologyError"]
__version__ = "0.1.0"
