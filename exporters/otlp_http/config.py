"""Settings of the otlp_http exporter; the shared ones and their defaults are in
collector.sending.settings."""

from __future__ import annotations

from pydantic import model_validator

from collector.sending import ProfilesExporterConfig
from collector.sending.http import check_url_and_tls, uses_tls


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
        return uses_tls(self.url())

    @model_validator(mode="after")
    def _scheme_and_tls_agree(self) -> OtlpHttpExporterConfig:
        check_url_and_tls(self.url(), self.endpoint, self.tls, "https://otel.example:4318")
        return self
