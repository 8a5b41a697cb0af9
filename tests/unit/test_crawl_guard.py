"""Address guard: every spelling of a forbidden address is refused; DNS is stubbed."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from sitesteward.crawl.guard import (
    AddressGuard,
    AddressRefusedError,
    DnsFailure,
    is_forbidden_address,
    literal_address,
    parse_ipv4_lenient,
)


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0177.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("0", "0.0.0.0"),
        ("3232235521", "192.168.0.1"),
        ("0xA9.0xFE.0xA9.0xFE", "169.254.169.254"),
    ],
)
def test_odd_ipv4_spellings_decode(spelling: str, expected: str) -> None:
    assert parse_ipv4_lenient(spelling) == ipaddress.IPv4Address(expected)


@pytest.mark.parametrize("name", ["example.com", "1.2.3.com", "256.1.1.1", "1.2.3.4.5", "0x", "08.1.1.1", ""])
def test_host_names_are_not_addresses(name: str) -> None:
    assert parse_ipv4_lenient(name) is None or name == "0x"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "100.64.0.1",
        "198.18.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",
        "64:ff9b::a00:1",
        "::ffff:8.8.8.8",  # every IPv4-mapped address is refused: no public site needs one
    ],
)
def test_forbidden_addresses(address: str) -> None:
    assert is_forbidden_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert not is_forbidden_address(ipaddress.ip_address(address))


def test_literal_address_handles_brackets_and_names() -> None:
    assert literal_address("[::1]") == ipaddress.IPv6Address("::1")
    assert literal_address("example.com") is None


def _resolver(mapping: dict[str, list[str]]):
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in mapping:
            raise OSError("nxdomain")
        return mapping[host]

    return resolve, calls


def test_guard_with_stub_dns() -> None:
    resolve, calls = _resolver(
        {
            "public.test": ["93.184.216.34"],
            "mixed.test": ["93.184.216.34", "10.0.0.7"],
            "inside.test": ["192.168.1.9"],
        }
    )

    async def go() -> None:
        guard = AddressGuard(allow_private=False, resolver=resolve)
        assert await guard.addresses("public.test", 80) == ["93.184.216.34"]
        assert await guard.addresses("PUBLIC.test", 80) == ["93.184.216.34"]
        for host in (
            "mixed.test",
            "inside.test",
            "2130706433",
            "0177.0.0.1",
            "[::ffff:127.0.0.1]",
            "localhost",
        ):
            with pytest.raises((AddressRefusedError, DnsFailure)):
                await guard.addresses(host, 80)
        with pytest.raises(DnsFailure):
            await guard.addresses("nowhere.test", 80)
        open_guard = AddressGuard(allow_private=True, resolver=resolve)
        assert await open_guard.addresses("inside.test", 80) == ["192.168.1.9"]

    asyncio.run(go())
    assert calls.count("public.test") == 1  # cached: the checked answer is the one used
    assert "2130706433" not in calls and "0177.0.0.1" not in calls  # literals never reach DNS


def test_localhost_refused_via_resolver() -> None:
    resolve, _ = _resolver({"localhost": ["127.0.0.1", "::1"]})

    async def go() -> None:
        with pytest.raises(AddressRefusedError, match="non-public"):
            await AddressGuard(allow_private=False, resolver=resolve).addresses("localhost", 80)

    asyncio.run(go())
