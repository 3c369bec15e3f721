"""lab.builder.links.parse: link name and operstate out of rtnetlink messages."""

import errno
import struct

import pytest

from lab.builder.links import (
    IF_OPER_UP,
    IFLA_IFNAME,
    IFLA_OPERSTATE,
    NLMSG_DONE,
    NLMSG_ERROR,
    RTM_DELLINK,
    RTM_NEWLINK,
    parse,
)


def attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def message(kind: int, *attrs: bytes) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, 7, 0, 0) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), kind, 2, 1, 0) + body


def test_names_and_operstates_of_new_and_removed_links():
    data = (message(RTM_NEWLINK, attr(IFLA_IFNAME, b"eth0\0"), attr(IFLA_OPERSTATE, b"\x06"))
            + message(RTM_NEWLINK, attr(99, b"xyz"), attr(IFLA_IFNAME, b"rs1-eth0\0"),
                      attr(IFLA_OPERSTATE, b"\x02"))
            + message(RTM_DELLINK, attr(IFLA_IFNAME, b"gone\0"))
            + struct.pack("=IHHII", 20, NLMSG_DONE, 2, 1, 0) + b"\0" * 4)
    assert parse(data) == {"eth0": IF_OPER_UP, "rs1-eth0": 2, "gone": None}


def test_the_last_message_about_a_link_wins_and_flags_are_masked():
    nested = 0x8000 | IFLA_IFNAME  # (the nested flag set: still the name)
    data = (message(RTM_NEWLINK, attr(nested, b"eth0\0"), attr(IFLA_OPERSTATE, b"\x02"))
            + message(RTM_NEWLINK, attr(IFLA_IFNAME, b"eth0\0"), attr(IFLA_OPERSTATE, b"\x06")))
    assert parse(data) == {"eth0": IF_OPER_UP}


def test_truncated_or_nameless_messages_give_nothing():
    whole = message(RTM_NEWLINK, attr(IFLA_IFNAME, b"eth0\0"), attr(IFLA_OPERSTATE, b"\x06"))
    assert parse(whole[:-3]) == {}
    assert parse(message(RTM_NEWLINK, attr(IFLA_OPERSTATE, b"\x06"))) == {}
    assert parse(b"") == {}


def test_an_error_message_raises():
    error = struct.pack("=IHHII", 36, NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -errno.EINVAL) \
        + b"\0" * 16
    with pytest.raises(OSError, match="link dump"):
        parse(error)
    ack = struct.pack("=IHHII", 36, NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", 0) + b"\0" * 16
    assert parse(ack) == {}
