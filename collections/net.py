"""Network helpers shared by the servers (the feed API and the review app)."""
from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether a listen address is reachable only from this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
