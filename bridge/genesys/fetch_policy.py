"""Which attachment URLs the bridge may download (§4.6): a guard against request forgery.

A ``message.send`` command may name an attachment by URL, and the bridge downloads it and uploads the
bytes to Genesys. Without a guard, a command could make the bridge read an internal endpoint (cloud
metadata at ``169.254.169.254``, a localhost admin port, a private service) and hand the answer to
Genesys. :class:`FetchPolicy` holds the rules; ``bridge.genesys.rest.GenesysRest.fetch_bytes`` applies
them to the first URL and to every redirect hop:

* only ``http`` and ``https``;
* when ``hosts`` is not empty, only those host names (exact, case-insensitive);
* every address the host resolves to, and the address actually connected to (which defeats a DNS answer
  that changes between the check and the connect), must be public: loopback, private, link-local,
  multicast, reserved, unspecified and other non-global addresses are refused unless ``allow_private``;
* at most ``max_redirects`` redirects.

A refusal raises :class:`bridge.errors.CommandRejected` with reason ``attachment_failed`` and a detail
naming the rule and the host, never the full URL (a query string may hold a signature).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, TypeAlias
from urllib.parse import urlsplit

from bridge.errors import CommandRejected, GenesysUnavailable

__all__ = ["REFUSED_REASON", "FetchPolicy", "Resolver", "address_problem", "refuse", "system_resolver"]

#: The contract's outcome reason for a refused download (the session layer reports it as such).
REFUSED_REASON: Final = "attachment_failed"

#: Resolves a host name and port to IP address strings (IPv4 or IPv6).
Resolver: TypeAlias = Callable[[str, int], Awaitable[list[str]]]

_SCHEMES: Final = frozenset({"http", "https"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, through the event loop's resolver (the system's).

    Raises:
        GenesysUnavailable: the name does not resolve (retryable, like any connect failure).
    """
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise GenesysUnavailable(f"GET {host}: name resolution failed") from exc
    return [str(info[4][0]) for info in infos]


def address_problem(address: str) -> str | None:
    """Why ``address`` is not a public address (``"loopback"``, ``"private"`` ...), or ``None`` if it is.

    An IPv4-mapped IPv6 address is judged as the IPv4 address it carries; a zone id (``%eth0``) is ignored.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("non-global", not ip.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def refuse(detail: str) -> CommandRejected:
    """The error for a download the policy refuses (``detail`` names the rule, never the full URL)."""
    return CommandRejected(REFUSED_REASON, f"attachment URL refused: {detail}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchPolicy:
    """The rules for attachment downloads. The default refuses every non-public address.

    Args:
        allow_private: allow loopback, private, link-local and other non-public addresses
            (``BRIDGE_ATTACHMENT_FETCH_ALLOW_PRIVATE``; for a trial against local files only).
        hosts: when not empty, the only host names that may be fetched (``BRIDGE_ATTACHMENT_FETCH_HOSTS``).
            Both rules apply: a listed host that resolves to a private address is still refused.
        max_redirects: redirects followed per download; each hop is checked like the first URL.
        resolve: host name resolution (tests inject a fake; production uses :func:`system_resolver`).
    """

    allow_private: bool = False
    hosts: frozenset[str] = frozenset()
    max_redirects: int = 5
    resolve: Resolver = field(default=system_resolver, repr=False, compare=False)

    @classmethod
    def of(cls, *, allow_private: bool = False, hosts: Iterable[str] = (), max_redirects: int = 5) -> FetchPolicy:
        """A policy from settings values: ``hosts`` are normalised to lower case, blanks dropped."""
        names = frozenset(h.strip().lower().rstrip(".") for h in hosts if h.strip())
        return cls(allow_private=allow_private, hosts=names, max_redirects=max_redirects)

    async def check_url(self, url: str) -> None:
        """Refuse ``url`` before any connection: scheme, host allow-list, every resolved address.

        Raises:
            CommandRejected: ``attachment_failed``, naming the rule that refused it.
            GenesysUnavailable: the host name does not resolve.
        """
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise refuse(f"scheme {parts.scheme!r} is not http or https")
        try:
            port = parts.port
        except ValueError:
            raise refuse("the port is not a number") from None
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise refuse("no host")
        if self.hosts and host not in self.hosts:
            raise refuse(f"host {host} is not in BRIDGE_ATTACHMENT_FETCH_HOSTS")
        if self.allow_private:
            return
        try:
            addresses = [str(ipaddress.ip_address(host))]  # an IP literal: nothing to resolve
        except ValueError:
            addresses = await self.resolve(host, port or _DEFAULT_PORTS[parts.scheme])
        if not addresses:
            raise GenesysUnavailable(f"GET {host}: name resolution returned no address")
        # Every address must pass, not just the first: the connect may pick any of them.
        for address in addresses:
            self._check_address(host, address)

    def check_peer(self, host: str, peer: object) -> None:
        """Refuse a connection whose remote address (``(ip, port, ...)`` from the socket) is not public.

        Called once connected, before the body is read: the address connected to is the one that
        counts, whatever the name resolved to a moment earlier. ``peer`` of an unknown shape is ignored
        (a test transport has no socket).

        Raises:
            CommandRejected: ``attachment_failed``.
        """
        if self.allow_private or not isinstance(peer, tuple) or not peer or not isinstance(peer[0], str):
            return
        self._check_address(host, peer[0])

    def _check_address(self, host: str, address: str) -> None:
        problem = address_problem(address)
        if problem is not None:
            raise refuse(
                f"host {host} is at a {problem} address ({address}); "
                "set BRIDGE_ATTACHMENT_FETCH_ALLOW_PRIVATE=true to allow non-public addresses"
            )
