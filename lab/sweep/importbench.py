"""How ``drlab import`` grows with the size of a collected cluster: CPU time per size.

Writes synthetic collected directories (the files ``scripts/collect`` writes) of
three shapes and imports each in this process, timing the import's CPU:

* ``one``:   one real server with N addresses, each in its own subnet;
* ``hosts``: N/10 real servers with 10 addresses each, ten to a service;
* ``wide``:  N/10 real servers with 10 addresses each, all in one service;
* ``dr``:    a keepalived director pair and three real servers with N services (N
  VIPs from 198.18.0.1, every one on each real server's lo): tests/gen_collected.py's
  cluster, in a source checkout only. With ``--diagnose`` (root, IPVS: in the VM),
  ``drlab diagnose`` of it too, in wall-clock seconds (it builds the twin).

Prints the CPU seconds (the fastest of ``--repeat`` imports) and each size's time
over the smallest's, to check that
the import stays linear. Not a test (no timings decide a test): run it with
``.venv/bin/python -m lab.sweep.importbench --addresses 1500,3000,6000``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import ipaddress
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

SHAPES = ("one", "hosts", "wide", "dr")


def _addr(cidr: str) -> dict[str, object]:
    i = ipaddress.ip_interface(cidr)
    return {"family": "inet" if i.version == 4 else "inet6", "local": str(i.ip),
            "prefixlen": i.network.prefixlen, "scope": "global"}


def _host(root: Path, name: str, ifaces: list[tuple[str, list[str]]],
          ipvs: str | None = None) -> None:
    d = root / name
    d.mkdir()
    (d / "ip-addr.json").write_text(json.dumps([
        {"ifname": n, "flags": ["UP"], "mtu": 1500,
         "link_type": "loopback" if n == "lo" else "ether",
         "addr_info": [_addr(c) for c in cidrs]} for n, cidrs in ifaces]))
    (d / "ip-link.json").write_text(json.dumps([{"ifname": n, "flags": ["UP"]}
                                                for n, _ in ifaces]))
    (d / "ip-route.json").write_text("[]")
    (d / "sysctl.txt").write_text("net.ipv4.conf.all.arp_ignore = 1\n")
    (d / "listen.txt").write_text("tcp LISTEN 0 511 0.0.0.0:80 0.0.0.0:*\n")
    if ipvs is not None:
        (d / "ipvsadm-save.txt").write_text(ipvs)


def _generator() -> ModuleType:
    """tests/gen_collected.py of this source checkout."""
    path = Path(__file__).resolve().parents[2] / "tests" / "gen_collected.py"
    spec = importlib.util.spec_from_file_location("gen_collected", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise SystemExit(f"importbench: the dr shape needs {path} (a source checkout)")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_cluster(root: Path, addresses: int, shape: str) -> None:
    """A collected cluster of about ``addresses`` addresses in ``root`` (see above);
    for ``dr``, of ``addresses`` services."""
    if shape == "dr":
        _generator().write_cluster(root, addresses)
        return
    director = [("lo", ["127.0.0.1/8"]), ("eth0", ["10.255.255.1/8"])]
    if shape == "one":
        _host(root, "lvs", director, "-A -t 198.51.100.1:80 -s rr\n"
                                     "-a -t 198.51.100.1:80 -r 10.0.0.1:80 -g -w 1\n")
        _host(root, "rs", [("lo", ["127.0.0.1/8", "198.51.100.1/32"]),
                           ("eth0", [f"10.{k // 250 % 250}.{k % 250}.1/24"
                                     for k in range(addresses)])])
        return
    nrs = addresses // 10
    per = nrs if shape == "wide" else 10

    def vip(s: int) -> str:
        return f"198.51.{100 + s // 250}.{s % 250 + 1}"

    lines = []
    for s in range((nrs + per - 1) // per):
        lines.append(f"-A -t {vip(s)}:80 -s rr")
        lines += [f"-a -t {vip(s)}:80 -r 10.{r // 250}.{r % 250}.1:80 -g -w {1 + r % 3}"
                  for r in range(s * per, min(nrs, (s + 1) * per))]
    _host(root, "lvs", director, "\n".join(lines) + "\n")
    for r in range(nrs):
        _host(root, f"rs{r}", [
            ("lo", ["127.0.0.1/8", f"{vip(r // per)}/32"]),
            ("eth0", [f"10.{r // 250}.{r % 250}.1/24"]
             + [f"172.{16 + r // 250 % 16}.{r % 250}.{k}/28" for k in range(2, 11)])])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.sweep.importbench",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--addresses", default="1500,3000,6000", metavar="N,N,...",
                    help="the sizes (default 1500,3000,6000)")
    ap.add_argument("--repeat", type=int, default=5, metavar="N",
                    help="import each N times and keep the fastest (default 5)")
    ap.add_argument("--shape", action="append", choices=SHAPES,
                    help="only this shape (repeatable; default one, hosts, wide)")
    ap.add_argument("--diagnose", action="store_true",
                    help="also time drlab diagnose of each (root and IPVS: in the VM)")
    args = ap.parse_args(argv)
    try:
        sizes = [int(x) for x in args.addresses.split(",")]
    except ValueError:
        ap.error(f"--addresses {args.addresses!r}: expected numbers separated by commas")

    # lazy: loaded only when main() runs (+38 modules, ~30 ms)
    from lab.model.collected import import_cluster

    for shape in args.shape or SHAPES[:3]:
        first = None
        for n in sizes:
            root = Path(tempfile.mkdtemp(prefix="drlab-importbench."))
            try:
                write_cluster(root, n, shape)
                times = []
                for _ in range(max(1, args.repeat)):
                    gc.collect()    # no collection left over from the last one
                    t0 = time.process_time()
                    import_cluster([root])
                    times.append(time.process_time() - t0)
                cpu = min(times)
                diag = _diagnose(root) if args.diagnose else None
            finally:
                shutil.rmtree(root)
            first = first or (n, cpu, diag)
            unit = "services " if shape == "dr" else "addresses"
            print(f"{shape:5} {n:7} {unit}  {cpu:6.2f} s CPU  "
                  f"{cpu / first[1]:5.2f}x the time of {first[0]} ({n / first[0]:g}x the input)"
                  + (f"  diagnose {diag:6.1f} s ({diag / first[2]:5.2f}x)"
                     if diag is not None and first[2] else ""), flush=True)
    return 0


def _diagnose(root: Path) -> float:
    """Wall-clock seconds of ``drlab diagnose ROOT`` (import, twin, measures, teardown)."""
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "lab", "diagnose", str(root)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       check=False)
    took = time.monotonic() - t0
    # exit 1: findings (the generated cluster has none expected, but a twin may say so)
    if r.returncode not in (0, 1):
        raise SystemExit(f"importbench: drlab diagnose {root}: exit {r.returncode}: "
                         + (r.stderr.strip().splitlines() or [""])[-1])
    return took


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
