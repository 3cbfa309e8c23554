"""Where a webhook may point: public addresses, plus the address classes explicitly allowed.

A webhook URL makes the service send requests on a tenant's behalf, so a URL that resolves to
loopback, link-local (cloud metadata lives there) or private addresses would let a tenant probe
the service's own network. Such URLs are refused unless the class is allowed for the org
(``memo-pipeline keys policy --allow-webhook-networks``) or for the deployment
(``MEMO_WEBHOOK_ALLOW_NETWORKS``). Unspecified, multicast and reserved addresses are always
refused. The check runs when the URL is set and again before every delivery (DNS can change);
the HTTP client resolves the name once more when it connects, a gap a resolver that answers
differently within seconds could still use.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

Resolver = Callable[[str, int], Iterable[str]]


class WebhookUrlRefused(ValueError):
    """The URL is malformed or points at an address class that is not allowed."""


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def address_class(address: str) -> str | None:
    """'loopback', 'link-local', 'private', 'reserved', or None for a public address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return "reserved"
    shared = ipaddress.ip_network("100.64.0.0/10")
    if ip.is_private or (isinstance(ip, ipaddress.IPv4Address) and ip in shared):
        return "private"
    if not ip.is_global:
        return "reserved"
    return None


def check_webhook_url(
    url: str, allowed: Iterable[str], resolver: Resolver | None = None
) -> list[str]:
    """Refuse ``url`` unless every address it resolves to is public or of an allowed class.

    Returns the resolved addresses.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise WebhookUrlRefused(f"webhook URL must be http or https, not {parts.scheme or 'empty'}")
    if not parts.hostname:
        raise WebhookUrlRefused("webhook URL has no host")
    if parts.username or parts.password:
        raise WebhookUrlRefused("webhook URL must not carry credentials; use the signing secret")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise WebhookUrlRefused(f"webhook URL has an invalid port: {exc}") from None
    try:
        addresses = list((resolver or _system_resolver)(parts.hostname, port))
    except (OSError, UnicodeError) as exc:
        raise WebhookUrlRefused(
            f"webhook host {parts.hostname!r} does not resolve ({exc.__class__.__name__})"
        ) from None
    if not addresses:
        raise WebhookUrlRefused(f"webhook host {parts.hostname!r} does not resolve")
    allowed_set = set(allowed)
    for address in addresses:
        kind = address_class(address)
        if kind is None or kind in allowed_set:
            continue
        if kind == "reserved":
            raise WebhookUrlRefused(
                f"webhook host {parts.hostname!r} resolves to {address}, a reserved address"
            )
        raise WebhookUrlRefused(
            f"webhook host {parts.hostname!r} resolves to {address}, a {kind} address; "
            f"allow {kind} webhooks for the org (memo-pipeline keys policy "
            f"--allow-webhook-networks {kind}) or the deployment (MEMO_WEBHOOK_ALLOW_NETWORKS)"
        )
    return addresses


def redact_url(url: str) -> str:
    """Scheme, host, port and path only: a query string or user info may hold a token."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
