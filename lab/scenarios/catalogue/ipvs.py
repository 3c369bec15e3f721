"""IPVS: the director's table and net.ipv4.vs.* knobs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from lab.builder import Lab, sysctl
from lab.model import default_dr
from lab.probes.vs_knobs import reconnect_same_port, use_conntrack
from lab.roles import client, director
from lab.scenarios.base import Outcome, Scenario, Variant, register
from lab.util import scaled


@dataclass
class TakeOut:
    """What an established connection did after its real server was taken out."""

    #: "answers" (it goes on), "hangs" (no answer in time) or "fails" (an error, e.g. a reset)
    fate: Literal["answers", "hangs", "fails"]
    evidence: list[str]


def _take_out(lab: Lab, how: str, expire_nodest: int = 0) -> TakeOut:
    """Open a connection, take its real server out (``weight0`` or ``delete``), then
    check the established connection and where new ones go."""
    svc = lab.topology.service
    assert svc is not None
    sysctl.write(lab.ns("director"), [("net.ipv4.vs.expire_nodest_conn", str(expire_nodest))])
    reply, s = client.open_connection(lab)
    if how == "weight0":
        director.set_weight(lab, reply.server, 0)
    else:
        director.remove_dest(lab, reply.server)
    ev = [f"connection to {reply.server}, then {how} (expire_nodest_conn={expire_nodest})"]
    s.settimeout(scaled(1.5))
    t0 = time.monotonic()
    try:
        s.sendall(b"still there?\n")
        echoed = s.recv(100)
        fate: Literal["answers", "hangs", "fails"] = (
            "answers" if echoed.startswith(b"still there?") else "fails")
        ev.append("the established connection still answers" if fate == "answers" else
                  f"the established connection got {echoed!r}")
    except TimeoutError:
        fate = "hangs"
        ev.append(f"the established connection hangs: no answer in {scaled(1.5):.1f}s")
    except OSError as e:
        fate = "fails"
        ev.append(f"the established connection failed after "
                  f"{(time.monotonic() - t0) * 1000:.0f} ms: {e}")
    finally:
        s.close()
    new = sorted({client.connect(lab).server for _ in range(3)})
    ev.append(f"new connections served by {new}")
    return TakeOut(fate, ev)


def _cut(t: TakeOut) -> Outcome:
    return Outcome(t.fate != "answers", t.evidence)


register(Scenario(
    name="weight-zero-drain",
    symptom="taking a real server out cuts its established connections",
    trigger="deleting the real server (ipvsadm -d): IPVS drops the packets of its connections",
    fix="drain it first with weight 0 (ipvsadm -e ... -w 0): no new connections, established "
        "ones go on",
    broken=lambda: default_dr(),
    fixed=lambda: default_dr(),
    observe=lambda lab, v: _cut(_take_out(lab, "delete" if v == "broken" else "weight0")),
    stimulus="open a connection, then delete or drain its real server",
    source="ipvsadm(8) (-w 0: quiescent real server); net/netfilter/ipvs/ip_vs_core.c",
))


def _expire_nodest(lab: Lab, variant: Variant) -> Outcome:
    t = _take_out(lab, "delete", expire_nodest=0 if variant == "broken" else 1)
    # the symptom here is the silent hang; a quick error (reset) is the fix
    return Outcome(t.fate == "hangs", t.evidence)


register(Scenario(
    name="expire-nodest-conn",
    symptom="clients of a deleted real server hang until their own timeouts",
    trigger="net.ipv4.vs.expire_nodest_conn=0: IPVS silently drops packets of connections "
            "whose real server is gone",
    fix="net.ipv4.vs.expire_nodest_conn=1: the entry expires and the next packet is "
        "rescheduled (the new real server resets it, so the client learns at once)",
    broken=lambda: default_dr(),
    fixed=lambda: default_dr(),
    observe=_expire_nodest,
    stimulus="open a connection, then delete its real server",
    source="Documentation/networking/ipvs-sysctl.rst (expire_nodest_conn)",
))


def _persistence(lab: Lab, variant: Variant) -> Outcome:
    servers = [client.connect(lab).server for _ in range(4)]
    ev = [f"4 connections from one client served by {servers}"]
    if variant == "fixed" and len(set(servers)) == 1:
        # drain the client's server: the persistence template still points at it
        sticky = servers[0]
        director.set_weight(lab, sticky, 0)
        for eqt in ("0", "1"):
            sysctl.write(lab.ns("director"),
                         [("net.ipv4.vs.expire_quiescent_template", eqt)])
            now = client.connect(lab).server
            ev.append(f"{sticky} at weight 0, expire_quiescent_template={eqt}: next connection "
                      f"served by {now}")
    return Outcome(len(set(servers)) > 1, ev)


register(Scenario(
    name="persistence",
    symptom="one client's connections land on different real servers (sessions break)",
    trigger="a service without persistence: every connection is scheduled on its own",
    fix="ipvsadm -A ... -p TIMEOUT: a template keeps each client on one real server (drained "
        "with weight 0, it keeps getting that client unless expire_quiescent_template=1)",
    broken=lambda: default_dr(),
    fixed=lambda: default_dr(persistence=60),
    observe=_persistence,
    stimulus="several connections from one client, compared (check calls an even spread healthy)",
    source="ipvsadm(8) (-p); Documentation/networking/ipvs-sysctl.rst (expire_quiescent_template)",
))


def _reuse_delay(lab: Lab, variant: Variant) -> Outcome:
    """Reconnect from the same source port while IPVS still holds the old connection.

    A DR director sees only the client's half of the close, so the entry sits in
    FIN_WAIT: conn_reuse_mode bit 1 covers TIME_WAIT only, bit 2 adds FIN_WAIT for
    DR/tunnel (so mode 3). IPVS then expires the entry and schedules anew; when
    the old connection was tracked by conntrack it drops the new SYN instead, and
    the client retries after 1 s."""
    conntrack = "1" if variant == "broken" else "0"
    # conntrack in use in the director's namespace in both variants; only
    # net.ipv4.vs.conntrack differs
    use_conntrack(lab)
    sysctl.write(lab.ns("director"), [("net.ipv4.vs.conn_reuse_mode", "3"),
                                      ("net.ipv4.vs.conntrack", conntrack)])
    r = reconnect_same_port(lab)
    return Outcome(r.delayed, [f"conn_reuse_mode=3 conntrack={conntrack}: {r}"])


register(Scenario(
    name="conn-reuse-delay",
    symptom="a client reusing a source port waits about 1 s for its connection",
    trigger="net.ipv4.vs.conn_reuse_mode=3 (bit 2 makes a DR entry in FIN_WAIT reusable) with "
            "net.ipv4.vs.conntrack=1: the reused connection's first SYN is dropped "
            "(kernel-version dependent; measured, not assumed)",
    fix="net.ipv4.vs.conntrack=0 where conntrack is not needed (kernels >= 5.9 then reschedule "
        "without the delay)",
    broken=lambda: default_dr(rs=1),
    fixed=lambda: default_dr(rs=1),
    observe=_reuse_delay,
    stimulus="reconnect from the same client port while IPVS holds the old entry",
    source=("Documentation/networking/ipvs-sysctl.rst (conn_reuse_mode, conntrack); "
            "kubernetes/kubernetes#93297"),
))
