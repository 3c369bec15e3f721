"""Reading files that others hand in (collected directories, topology files,
keepalived.conf) as root, safely: regular files only, never through a link inside
what was handed in, at most :data:`MAX_BYTES`, and a FIFO or device never hangs the
read (see SECURITY.md). Every refusal is one :class:`TopologyError` line (exit 2).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from lab.errors import TopologyError

#: The largest file read (scripts/collect writes far less: 16 MiB is a broken or hostile
#: file).
MAX_BYTES = 16 * 1024 * 1024

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def shown(text: str) -> str:
    """``text`` with every character that is not printable (control characters, line
    and paragraph separators, bidirectional overrides, lone surrogates of undecodable
    names) escaped as in a Python literal, so that it stays on its line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def _refuse(path: Path | str, why: str) -> TopologyError:
    return TopologyError(shown(f"{path}: {why}"))


def _kind(mode: int) -> str:
    return ("a symbolic link" if stat.S_ISLNK(mode) else "a directory" if stat.S_ISDIR(mode)
            else "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a file" if stat.S_ISREG(mode) else "of an unknown type")


def exists(name: str | Path, dir_fd: int | None = None) -> bool:
    """Whether ``name`` is there at all (a link counts: reading it is refused)."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (OSError, ValueError):
        return False
    return True


def is_dir(name: str | Path, dir_fd: int | None = None) -> bool:
    """A directory itself, not a link to one."""
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except (OSError, ValueError):
        return False


def open_dir(path: Path, *, dir_fd: int | None = None, follow: bool = False) -> int:
    """An open directory (O_DIRECTORY; not through a link unless ``follow``): the files
    in it are then opened relative to it, so that no one can swap it for a link
    between a check and a read. The caller closes it."""
    name = path.name if dir_fd is not None else path
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
                     | (0 if follow else os.O_NOFOLLOW), dir_fd=dir_fd)
    except FileNotFoundError:
        raise _refuse(path, "no such directory") from None
    except OSError as e:
        try:
            mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
        except OSError:
            mode = 0
        if mode and not stat.S_ISDIR(mode):
            raise _refuse(path, f"{_kind(mode)}, not a directory" + (
                ": refused (collected directories are read without following links)"
                if stat.S_ISLNK(mode) else "")) from None
        raise _refuse(path, f"cannot open: {e.strerror or e}") from None
    except ValueError as e:     # a NUL in the name
        raise _refuse(path, f"cannot open: {e}") from None
    return fd


def read_bytes(path: Path, *, dir_fd: int | None = None, follow: bool = False,
               limit: int = MAX_BYTES) -> bytes:
    """A regular file's bytes: opened O_NOFOLLOW (unless ``follow``: a path the user
    named) and O_NONBLOCK (a FIFO does not block the open), checked with fstat to be
    a regular file of at most ``limit`` bytes. ``dir_fd``: ``path.name`` in that
    directory."""
    name = path.name if dir_fd is not None else path
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | (
        0 if follow else os.O_NOFOLLOW)
    try:
        # look before opening: opening a device can do something (a tape rewinds)
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=follow).st_mode
        if not stat.S_ISREG(mode):
            raise _refuse(path, f"{_kind(mode)}: refused (only regular files are read"
                                + ("" if follow else ", never through a link") + ")")
        fd = os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        raise _refuse(path, "no such file") from None
    except OSError as e:
        raise _refuse(path, f"cannot read: {e.strerror or e}") from None
    except ValueError as e:     # a NUL in the name
        raise _refuse(path, f"cannot read: {e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):    # swapped since the look
            raise _refuse(path, f"{_kind(st.st_mode)}: refused (only regular files are read)")
        if st.st_size > limit:
            raise _refuse(path, f"{st.st_size} bytes: larger than the {_size(limit)} a file "
                                "handed in may have: refused")
        chunks, got = [], 0
        while got <= limit:
            try:
                chunk = os.read(fd, min(1 << 20, limit + 1 - got))
            except OSError as e:
                raise _refuse(path, f"cannot read: {e.strerror or e}") from None
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            raise _refuse(path, f"larger than the {_size(limit)} a file handed in may have: "
                                "refused")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: Path, *, dir_fd: int | None = None, follow: bool = False,
              limit: int = MAX_BYTES) -> str:
    """:func:`read_bytes` as text: UTF-8, with what does not decode replaced by U+FFFD
    (production files may hold a latin-1 comment: it does not stop an import)."""
    return read_bytes(path, dir_fd=dir_fd, follow=follow, limit=limit).decode(
        "utf-8", errors="replace")


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n} bytes"
