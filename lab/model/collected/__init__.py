"""A collected cluster -> a lab topology (``drlab import``): pure, reads files only.

``scripts/collect`` writes one directory per LVS director and real server::

    DIR/<hostname>/ip-addr.json      ip -j addr show            (required)
                   ip-link.json      ip -j -d link show         (interface kinds, NOARP)
                   ip-route.json     ip -j route show
                   ip6-route.json    ip -j -6 route show
                   sysctl.txt        key = value
                   ipvsadm-save.txt  ipvsadm-save -n            (where there is an IPVS table)
                   listen.txt        ss -Hltnu
                   keepalived.conf, uname.txt, collect.txt, skipped.txt

One step a module:

- :mod:`~lab.model.collected.records`: what the files said (``CollectedHost``,
  ``CollectedLink``, ``CollectedAddress``, ``CollectedService`` ...), not the lab's model;
- :mod:`~lab.model.collected.parse`: each file's text -> records (``parse_*``);
- :mod:`~lab.model.collected.read`: a host's directory, read safely
  (:mod:`lab.model.files`) and parsed (:func:`read_host`, :func:`read_hosts`);
- :mod:`~lab.model.collected.importer`: records -> the twin, a
  :class:`~lab.model.Topology` (:func:`import_cluster`).

:func:`lab.model.writer.dump` writes the twin as a topology file.
"""

from lab.model.collected.importer import (
    CONF_KEYS,
    IMPORT_ROLES,
    VS_KEYS,
    Imported,
    import_cluster,
    lab_name,
)
from lab.model.collected.parse import (
    parse_ipvsadm,
    parse_json,
    parse_keyvalues,
    parse_links,
    parse_listen,
    parse_routes,
    parse_sysctls,
)
from lab.model.collected.read import HOST_FILES, find_hosts, natural, read_host, read_hosts
from lab.model.collected.records import (
    CollectedAddress,
    CollectedHost,
    CollectedLink,
    CollectedListener,
    CollectedReal,
    CollectedRoute,
    CollectedService,
)
from lab.model.writer import to_toml

__all__ = [
    "CONF_KEYS", "HOST_FILES", "IMPORT_ROLES", "VS_KEYS", "CollectedAddress", "CollectedHost",
    "CollectedLink", "CollectedListener", "CollectedReal", "CollectedRoute", "CollectedService",
    "Imported", "find_hosts", "import_cluster", "lab_name", "natural", "parse_ipvsadm",
    "parse_json", "parse_keyvalues", "parse_links", "parse_listen", "parse_routes",
    "parse_sysctls", "read_host", "read_hosts", "to_toml",
]
