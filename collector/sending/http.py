"""What every HTTP exporter shares: the URL/TLS agreement rules, the client TLS context and
the Retry-After header (components never import each other, so it lives here)."""

from __future__ import annotations

import email.utils
import ssl
import time
from urllib.parse import urlsplit

from collector.sending.settings import TLSSettings


def uses_tls(url: str) -> bool:
    return urlsplit(url).scheme.lower() == "https"


def check_url_and_tls(url: str, endpoint: str, tls: TLSSettings, example: str) -> None:
    """The URL's scheme decides; a tls setting it makes meaningless is refused, never
    accepted and ignored. Raises ValueError (a config error naming the setting)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"endpoint {endpoint!r} is not an http:// or https:// URL with a host, e.g. {example}"
        )
    if uses_tls(url):
        if tls.insecure:
            raise ValueError(
                "tls.insecure: true asks for plain text but the endpoint is https://; "
                "use an http:// endpoint, or remove tls.insecure"
            )
    elif tls.tls_options():
        raise ValueError(
            f"{', '.join(tls.tls_options())} need an https:// endpoint; "
            f"{endpoint} is plain http: use https:// or remove them"
        )


def client_ssl(tls: TLSSettings, url: str) -> ssl.SSLContext | bool:
    """aiohttp's ``ssl=``: False for http://, else a context honouring ca/cert/key/skip."""
    if not uses_tls(url):
        return False
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file is not None and tls.key_file is not None:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as delay-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)
