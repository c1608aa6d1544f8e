"""Settings of the otlp (gRPC) exporter; the shared ones and their defaults are in
collector.sending.settings."""

from __future__ import annotations

from pydantic import model_validator

from collector.sending import ProfilesExporterConfig


class OtlpExporterConfig(ProfilesExporterConfig):
    endpoint: str = "127.0.0.1:4317"  # host:port

    @model_validator(mode="after")
    def _grpc_only(self) -> OtlpExporterConfig:
        if "://" in self.endpoint:
            raise ValueError("endpoint is host:port for gRPC (no scheme), e.g. 127.0.0.1:4317")
        host, _, port = self.endpoint.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"endpoint {self.endpoint!r} is not host:port, e.g. 127.0.0.1:4317")
        return self
