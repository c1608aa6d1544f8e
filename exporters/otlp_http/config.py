"""Settings of the otlp_http exporter; the shared ones and their defaults are in
collector.sending.settings."""

from __future__ import annotations

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
