"""Can this machine run a lab? Each check raises PreflightError with one clear line."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

from lab.errors import PreflightError

VM_HINT = ("run it through the VM runner instead: scripts/test (suite), scripts/drlab "
           "(CLI) or scripts/vm-run -- CMD, which boot a kernel with IPVS under virtme-ng")


def require_root() -> None:
    if os.geteuid() != 0:
        raise PreflightError("must run as root (network namespaces and IPVS need "
                             "CAP_SYS_ADMIN and CAP_NET_ADMIN): try sudo")


def require_netns() -> None:
    require_root()
    if not os.path.exists("/proc/self/ns/net"):
        raise PreflightError("this kernel has no network namespaces (CONFIG_NET_NS)")


def ipvsadm_path() -> str | None:
    return shutil.which("ipvsadm")


def require_ipvsadm() -> str:
    path = ipvsadm_path()
    if path is None:
        raise PreflightError("ipvsadm not found on PATH: install it (apt-get install ipvsadm, "
                             "or scripts/bootstrap)")
    return path


def ipvs_available(load: bool = True) -> bool:
    """True if the running kernel has IPVS (loading the ip_vs module if needed)."""
    if os.path.exists("/proc/net/ip_vs") or os.path.isdir("/sys/module/ip_vs"):
        return True
    if load and os.geteuid() == 0 and shutil.which("modprobe"):
        subprocess.run(["modprobe", "-q", "ip_vs"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    return os.path.exists("/proc/net/ip_vs") or os.path.isdir("/sys/module/ip_vs")


def require_ipvs(hint: str = VM_HINT) -> None:
    """Everything a DR lab with a director needs: root, netns, ipvsadm, kernel IPVS.
    ``hint`` ends the no-IPVS message (what to do instead)."""
    require_netns()
    require_ipvsadm()
    if not ipvs_available():
        raise PreflightError(f"kernel {platform.release()} has no IPVS (CONFIG_IP_VS not set "
                             f"and no ip_vs module); {hint}")


def in_vm() -> bool:
    """True inside the disposable VM of scripts/vm-run (which sets DRLAB_IN_VM=1)."""
    return os.environ.get("DRLAB_IN_VM") == "1"
