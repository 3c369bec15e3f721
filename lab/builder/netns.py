"""Named network namespaces, made and entered without forking.

Namespaces are named like iproute2's (``/run/netns/NAME``), so ``ip netns exec
NAME ...`` works while a lab is up. ``entered(name)`` moves only the calling
*thread* into the namespace (setns(2) is per thread) and always moves it back;
sockets opened inside stay in that namespace after the thread returns, which is
how the test process talks from inside any lab host.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_BIND = 0x1000
MS_SHARED = 1 << 20
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
# resolved once, so forked children never call dlsym (see realserver._prctl)
_setns = _libc.setns


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def path(name: str) -> str:
    return os.path.join(NETNS_RUN_DIR, name)


def exists(name: str) -> bool:
    return os.path.exists(path(name))


def listing() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at ``fd``."""
    _check(_setns(fd, CLONE_NEWNET), "setns")


def _prepare_run_dir() -> None:
    # As iproute2 does: make /run/netns a shared mount so that namespaces
    # bound below it are visible from other mount namespaces.
    os.makedirs(NETNS_RUN_DIR, exist_ok=True)
    d = NETNS_RUN_DIR.encode()
    if _libc.mount(b"none", d, None, MS_SHARED | MS_REC, None) == 0:
        return
    if ctypes.get_errno() != errno.EINVAL:
        _check(-1, f"mount --make-rshared {NETNS_RUN_DIR}")
    _check(_libc.mount(d, d, b"none", MS_BIND | MS_REC, None), f"bind {NETNS_RUN_DIR}")
    _check(_libc.mount(b"none", d, None, MS_SHARED | MS_REC, None),
           f"mount --make-rshared {NETNS_RUN_DIR}")


_run_dir_ready = False


def create(name: str) -> None:
    """Create the named namespace ``name`` (EEXIST if it exists)."""
    global _run_dir_ready
    if not _run_dir_ready:
        _prepare_run_dir()
        _run_dir_ready = True
    p = path(name)
    os.close(os.open(p, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        try:
            _check(_libc.mount(b"/proc/thread-self/ns/net", p.encode(), b"none", MS_BIND, None),
                   f"bind namespace to {p}")
        finally:
            setns(own)
    except BaseException:
        _remove_file(p)
        raise
    finally:
        os.close(own)


def remove(name: str) -> bool:
    """Remove the named namespace; False if it did not exist.

    The namespace itself dies with its last user: processes still inside it
    keep it alive, so kill those first (the builder does).
    """
    p = path(name)
    if not os.path.exists(p):
        return False
    _libc.umount2(p.encode(), MNT_DETACH)
    _remove_file(p)
    return True


def _remove_file(p: str) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


@contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the body with the calling thread inside namespace ``name``."""
    target = os.open(path(name), os.O_RDONLY)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        setns(target)
        try:
            yield
        finally:
            setns(own)
    finally:
        os.close(target)
        os.close(own)


def socket_in(name: str, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM,
              proto: int = 0) -> socket.socket:
    """A socket that lives in namespace ``name``, usable from any thread."""
    with entered(name):
        return socket.socket(family, type, proto)


def enter_in_child(name: str) -> None:
    """For a forked child (e.g. ``preexec_fn``): move the whole process into ``name``."""
    fd = os.open(path(name), os.O_RDONLY)
    try:
        setns(fd)
    finally:
        os.close(fd)


def read_proc(name: str, rel: str) -> str:
    """Read ``/proc/<rel>`` (e.g. ``net/snmp`` or ``sys/net/...``) as seen inside ``name``."""
    with entered(name):
        with open(f"/proc/thread-self/{rel}" if rel.startswith("net/") else f"/proc/{rel}") as f:
            return f.read()
