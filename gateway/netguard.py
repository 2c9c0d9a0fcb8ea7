"""Which hosts an expert endpoint may reach: allow/deny rules checked on names and addresses.

A rule (`security.endpoint_allow` / `endpoint_deny`) is an IP address, a CIDR network, a host
name, or `*.domain` (every name under it)::

    policy = HostPolicy(allow=[], deny=["169.254.0.0/16", "metadata.google.internal"])
    policy.refusal("metadata.google.internal")      -> "... is refused by security.endpoint_deny"
    addresses = checked_addresses(policy, "vllm-0", 8000)   # resolves, checks every address

A host passes when neither its name nor any address it resolves to is denied, and (with a
non-empty allow list) its name or every one of its addresses is allowed. Deny wins. IPv6
addresses that embed an IPv4 one (`::ffff:a.b.c.d`, 6to4, NAT64) are checked as both, and a
zone id (`fe80::1%eth0`) is ignored, so no spelling of a refused address gets through.

`lookup` is the one resolver every check calls (the registration checks, and the connect path
of `gateway/guarded_http.py`): tests replace it to point names wherever they like.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import anyio.to_thread

__all__ = [
    "EndpointRefused",
    "HostPolicy",
    "IPAddress",
    "achecked_addresses",
    "checked_addresses",
    "lookup",
    "parse_rule",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_INET_ATON = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}")


class EndpointRefused(ValueError):
    """The endpoint's host (or an address it resolves to) is not allowed."""


@dataclass(frozen=True)
class _Rules:
    networks: tuple[_Network, ...]
    names: frozenset[str]
    suffixes: tuple[str, ...]

    def match_name(self, name: str) -> str | None:
        if name in self.names:
            return name
        return next((f"*{s}" for s in self.suffixes if name.endswith(s)), None)

    def match_address(self, address: IPAddress) -> str | None:
        candidates = [address, *_embedded_ipv4(address)]
        for network in self.networks:
            if any(a.version == network.version and a in network for a in candidates):
                return str(network)
        return None


def parse_rule(rule: str) -> _Network | str:
    """A network (an address is a /32 or /128) or a lower-case host name (`*.x` kept);
    `ValueError` naming the rule when it is neither."""
    text = rule.strip().lower()
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    name = text.removeprefix("*.")
    labels = name.rstrip(".").split(".")
    if not name or not all(
        label and len(label) <= 63 and label.replace("-", "").replace("_", "").isalnum()
        for label in labels
    ):
        raise ValueError(f"{rule!r} is not an IP address, a CIDR network or a host name")
    return text.rstrip(".")


def _rules(entries: Iterable[str]) -> _Rules:
    networks: list[_Network] = []
    names: set[str] = set()
    suffixes: list[str] = []
    for entry in entries:
        rule = parse_rule(entry)
        if not isinstance(rule, str):
            networks.append(rule)
        elif rule.startswith("*."):
            suffixes.append(rule[1:])
        else:
            names.add(rule)
    return _Rules(tuple(networks), frozenset(names), tuple(suffixes))


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def parse_address(host: str) -> IPAddress | None:
    """`host` as an IP address (brackets and a zone id dropped), None when it is a name.

    The shorthand IPv4 spellings the C resolver accepts count as addresses too (2852039166,
    0xa9fea9fe, 169.254.43518, 0251.0376.0251.0376 are all 169.254.169.254)."""
    text = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _INET_ATON.fullmatch(text.lower()):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


class HostPolicy:
    """`security.endpoint_allow` / `endpoint_deny`, parsed once."""

    def __init__(self, allow: Sequence[str] = (), deny: Sequence[str] = ()) -> None:
        self._allow = _rules(allow) if allow else None
        self._deny = _rules(deny)

    def name_refusal(self, host: str) -> str | None:
        """What can be said before resolving: a denied name, or an address refused outright."""
        name = _name(host)
        if parse_address(name) is not None:
            return self.refusal(name)
        if rule := self._deny.match_name(name):
            return f"host {name!r} is refused by security.endpoint_deny ({rule})"
        return None

    def refusal(self, host: str, addresses: Sequence[IPAddress] = ()) -> str | None:
        """Why `host` (resolved to `addresses`) is refused, or None when it may be reached."""
        name = _name(host)
        literal = parse_address(name)
        if literal is not None:
            addresses = [literal]
        elif rule := self._deny.match_name(name):
            return f"host {name!r} is refused by security.endpoint_deny ({rule})"
        what = f"address {literal}" if literal is not None else f"host {name!r}"
        for address in addresses:
            if rule := self._deny.match_address(address):
                via = "" if literal is not None else f" resolves to {address}, which"
                return f"{what}{via} is refused by security.endpoint_deny ({rule})"
        if self._allow is None or (literal is None and self._allow.match_name(name)):
            return None
        outside = [a for a in addresses if not self._allow.match_address(a)]
        if not addresses:
            return f"{what} is not in security.endpoint_allow (and resolves to no address)"
        if outside:
            via = "" if literal is not None else f" (address {outside[0]})"
            return f"{what}{via} is not in security.endpoint_allow"
        return None


def _name(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def lookup(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (the system resolver); `OSError` when it does not."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_addresses(
    policy: HostPolicy, host: str, port: int, *, strict: bool = True
) -> list[str]:
    """The addresses to connect to for `host`, every one checked; `EndpointRefused` if any is
    refused. A name that does not resolve raises `OSError`, or with `strict=False` (checks at
    registration: the name may exist later; every connection checks again) is accepted."""
    if (reason := policy.name_refusal(host)) is not None:
        raise EndpointRefused(reason)
    literal = parse_address(host)
    if literal is not None:  # connect to the address checked, however it was spelt
        return [str(literal)] if literal.version == 4 else [host.strip("[]")]
    try:
        found = lookup(host, port)
    except OSError:
        if strict:
            raise
        if (reason := policy.refusal(host)) is not None:
            raise EndpointRefused(reason) from None
        return []
    addresses = [a for a in (parse_address(x) for x in found) if a is not None]
    if len(addresses) != len(found) or not found:
        raise EndpointRefused(f"host {host!r} resolved to something that is not an address")
    if (reason := policy.refusal(host, addresses)) is not None:
        raise EndpointRefused(reason)
    return found


async def achecked_addresses(
    policy: HostPolicy, host: str, port: int, *, strict: bool = True
) -> list[str]:
    """`checked_addresses` with the name resolved on a worker thread."""
    if (reason := policy.name_refusal(host)) is not None:  # never resolved
        raise EndpointRefused(reason)
    return await anyio.to_thread.run_sync(
        lambda: checked_addresses(policy, host, port, strict=strict)
    )
