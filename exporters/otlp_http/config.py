"""Settings of the otlp_http exporter; the shared ones and their defaults are in
collector.sending.settings."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import model_validator

from collector.sending import ProfilesExporterConfig


class OtlpHttpExporterConfig(ProfilesExporterConfig):
    # Base URL; /v1development/profiles is appended. Without a scheme: http:// when
    # tls.insecure is true, else https://.
    endpoint: str = "http://127.0.0.1:4318"
    profiles_path: str = "/v1development/profiles"

    def url(self) -> str:
        base = self.endpoint.rstrip("/")
        if "://" not in base:
            base = ("http://" if self.tls.insecure else "https://") + base
        return base + self.profiles_path

    def uses_tls(self) -> bool:
        return urlsplit(self.url()).scheme.lower() == "https"

    @model_validator(mode="after")
    def _scheme_and_tls_agree(self) -> OtlpHttpExporterConfig:
        # The URL's scheme decides; a tls setting it makes meaningless is refused, not ignored.
        parts = urlsplit(self.url())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"endpoint {self.endpoint!r} is not an http:// or https:// URL with a host, "
                "e.g. https://otel.example:4318"
            )
        if self.uses_tls():
            if self.tls.insecure:
                raise ValueError(
                    "tls.insecure: true asks for plain text but the endpoint is https://; "
                    "use an http:// endpoint, or remove tls.insecure"
                )
        elif self.tls.tls_options():
            raise ValueError(
                f"{', '.join(self.tls.tls_options())} need an https:// endpoint; "
                f"{self.endpoint} is plain http: use https:// or remove them"
            )
        return self
