"""keepalived: what goes wrong in the control plane DR directors really run under."""

from __future__ import annotations

import sh

from lab.builder import Lab
from lab.model.keepalived import keepalived_dr
from lab.probes import arp, vrrp
from lab.roles import client, keepalived, realserver
from lab.scenarios.base import Outcome, Scenario, Variant, register
from lab.util import Timeout, wait_for


def _connects(lab: Lab, n: int = 2) -> tuple[list[str], list[str]]:
    """(servers that answered, errors) for ``n`` short connections through the VIP."""
    ok, bad = [], []
    for _ in range(n):
        try:
            ok.append(client.connect(lab, timeout=1).server)
        except client.ConnectError as e:
            bad.append(str(e))
    return ok, bad


def _nft(lab: Lab, host: str) -> str:
    try:
        return str(sh.Command("ip")("netns", "exec", lab.ns(host), "nft", "list", "ruleset"))
    except sh.ErrorReturnCode as e:
        return f"(nft list ruleset failed: {e.stderr.decode(errors='replace').strip()})"


# vrrp-strict-drops-vip -------------------------------------------------------------
def _strict(lab: Lab, variant: Variant) -> Outcome:
    h = vrrp.holding(lab)
    ok, bad = _connects(lab)
    rules = [x.strip() for x in _nft(lab, h.holders[0] if h.holders else "director")
             .splitlines() if "drop" in x or "table" in x]
    ev = h.lines() + [f"{len(ok)} of {len(ok) + len(bad)} connections through the VIP "
                      f"worked" + (f" ({bad[0]})" if bad else ""),
                      "holder's nftables: " + ("; ".join(rules) or "no drop rule")]
    return Outcome(len(h.holders) == 1 and not ok, ev)


register(Scenario(
    name="vrrp-strict-drops-vip",
    symptom="the VIP moves to the director as it should, yet nothing reaches the service",
    trigger="vrrp_strict without `accept`: keepalived installs a firewall rule dropping "
            "every packet to the VIP on the holder, before IPVS sees it",
    fix="add `accept` to the vrrp_instance with `vrrp_version 3` (VRRPv2 forbids accept "
        "mode and keepalived silently resets it), or drop vrrp_strict",
    broken=lambda: keepalived_dr(strict=True, accept=False),
    fixed=lambda: keepalived_dr(strict=True, accept=True),
    observe=_strict,
    source="acassen/keepalived#1373, acassen/keepalived#2319",
    stimulus="a keepalived pair: the scenario's run waits for VRRP's election first",
))


# failback-resets-connections --------------------------------------------------------
def _failback(lab: Lab, variant: Variant) -> Outcome:
    r = vrrp.failover(lab, "link")
    reply, sock = client.open_connection(lab)  # a connection made through the backup
    ev = r.evidence + [f"connection from port {reply.local[1]} opened through {r.new}"]
    vrrp.restore(lab, "director", "link")
    try:
        if vrrp.preempts(lab, "director"):
            vrrp.wait_holder(lab, not_="director2")
        else:
            keepalived.wait_state(lab, "director", "BACKUP")
        ev.append(f"director back: VIP held by {', '.join(vrrp.holders(lab))}")
        fate = vrrp.still(sock)
    finally:
        sock.close()
    ev.append(f"the connection opened through {r.new} {fate} after the failback")
    return Outcome(fate != "answers", ev)


register(Scenario(
    name="failback-resets-connections",
    symptom="when the master comes back, every connection opened during the failover is "
            "reset",
    trigger="a preempting master takes the VIP back with an empty connection table and "
            "no sync: the connections' next packets hit its own stack",
    fix="`nopreempt` (state BACKUP on both), or lvs_sync_daemon so the returning master "
        "has the entries",
    broken=lambda: keepalived_dr(preempt=True, sync=False),
    fixed=lambda: keepalived_dr(preempt=False, sync=False),
    observe=_failback,
    source="acassen/keepalived#237, acassen/keepalived#1966",
    stimulus="fail over, connect, fail back",
))


# healthcheck-on-rip-only ------------------------------------------------------------
def _rip_only(lab: Lab, variant: Variant) -> Outcome:
    rip = lab.topology.primary_ip("rs1")
    for pid in realserver.service_pids(lab, "rs1"):
        realserver.stop_service(pid)
    realserver.start_service(lab, "rs1", bind=rip if variant == "broken" else None)
    holder = vrrp.wait_holder(lab)
    try:  # keepalived's checker connects to the RIP: does IPVS keep rs1?
        wait_for(lambda: vrrp.rs_in_table(lab, holder).get("rs1", 0) > 0, 10,
                 "rs1 in IPVS")
        kept = True
    except Timeout:
        kept = False
    ok, bad = _connects(lab, 4)
    where = f"{rip}:80 only" if variant == "broken" else "every address"
    ev = [f"rs1's service listens on {where}",
          f"IPVS on {holder} {'keeps' if kept else 'dropped'} rs1 (TCP_CHECK on {rip}:80)",
          f"4 connections through the VIP: served by {ok}, {len(bad)} failed"
          + (f" ({bad[0]})" if bad else "")]
    return Outcome(kept and bool(bad), ev)


register(Scenario(
    name="healthcheck-on-rip-only",
    symptom="keepalived says every real server is healthy, yet some connections to the VIP "
            "are refused",
    trigger="the service listens on the real server's own address only; TCP_CHECK connects "
            "to that address, but DR delivers to the VIP",
    fix="make the service listen on the VIP (or every address), and check what DR uses",
    broken=lambda: keepalived_dr(),
    fixed=lambda: keepalived_dr(),
    observe=_rip_only,
    source="LVS-HOWTO (real server must accept packets for the VIP); keepalived TCP_CHECK "
           "connect_ip semantics",
    stimulus="restart a real server's service bound to its own address",
))


# stale-vip-after-crash --------------------------------------------------------------
def _crash(lab: Lab, variant: Variant) -> Outcome:
    vip = lab.topology.main_service.vip
    keepalived.stop(lab, "director", crash=True)  # SIGKILL to all: no cleanup
    wait_for(lambda: "director2" in vrrp.holders(lab), 20, "director2 to take the VIP")
    ev = ["keepalived on director killed (SIGKILL, no cleanup); director2 took the VIP"]
    if variant == "fixed":  # what an operator (or systemd's restart) does
        keepalived.start(lab, "director")
        keepalived.wait_state(lab, "director", "BACKUP")
        ev.append("keepalived started again on director: it came up BACKUP")
        # With preempt (priority 150 against 100) the director takes the VIP back
        # about three adverts later: measure once the holder has settled, or the
        # census lands in the middle of that handover and hears both directors.
        preempt = vrrp.preempts(lab, "director")
        settled = vrrp.wait_holder(lab, not_="director2" if preempt else "director")
        ev.append(f"then only {settled} held the VIP" + (" (preempt)" if preempt else ""))
    h = vrrp.holding(lab)
    ok, bad = _connects(lab, 4)
    entry = arp.resolves_to(lab, "client", vip)
    ev += h.lines() + [f"client's entry for {vip}: {entry}; {len(ok)} of 4 connections "
                       f"worked (served by {ok})"]
    return Outcome(len(h.holders) > 1 or len(h.arp_answerers) > 1, ev)


register(Scenario(
    name="stale-vip-after-crash",
    symptom="after the master dies hard, two directors answer ARP for the VIP; clients "
            "follow whichever answered last",
    trigger="keepalived killed without cleanup (SIGKILL, OOM) leaves the VIP on the "
            "interface while the backup takes it over",
    fix="start keepalived again on that node (it removes the VIPs it does not own as "
        "BACKUP), or remove the address; never leave a crashed node's interface up",
    broken=lambda: keepalived_dr(),
    fixed=lambda: keepalived_dr(),
    observe=_crash,
    source="acassen/keepalived VRRP address ownership; LVS-HOWTO, failover",
    stimulus="kill the master's keepalived with SIGKILL",
))
