"""The client's line reader turns socket errors into ConnectError (loopback only)."""

import errno
import socket
import struct
import time

import pytest

from lab.roles.client import ConnectError, read_line


def _pair() -> tuple[socket.socket, socket.socket, socket.socket]:
    lst = socket.create_server(("127.0.0.1", 0))
    c = socket.create_connection(lst.getsockname())
    s, _ = lst.accept()
    return lst, c, s


def test_read_line_returns_the_first_line():
    lst, c, s = _pair()
    with lst, c, s:
        s.sendall(b"rs1 1 2\nmore")
        assert read_line(c, time.monotonic() + 5) == "rs1 1 2"


def test_read_line_reports_a_reset_as_connect_error():
    lst, c, s = _pair()
    with lst, c:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # linger 0: the peer gets a RST
        with pytest.raises(ConnectError) as e:
            read_line(c, time.monotonic() + 5)
    assert e.value.errno == errno.ECONNRESET
    assert "ECONNRESET" in str(e.value)


def test_read_line_times_out():
    lst, c, s = _pair()
    with lst, c, s, pytest.raises(ConnectError, match="in time"):
        read_line(c, time.monotonic() + 0.05)
