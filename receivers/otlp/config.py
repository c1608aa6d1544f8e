"""Settings of the otlp receiver (defaults in one place)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from collector.component import ComponentConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerTLSSettings(_Strict):
    cert_file: Path  # the server's certificate chain (PEM)
    key_file: Path
    # Require a client certificate signed by this CA (mutual TLS); a client without one,
    # or with another CA's, is refused in the TLS handshake.
    client_ca_file: Path | None = None

    @model_validator(mode="after")
    def _files(self) -> ServerTLSSettings:
        for f in (self.cert_file, self.key_file, self.client_ca_file):
            if f is not None and not f.is_file():
                raise ValueError(f"tls file not found: {f}")
        return self


class AuthSettings(_Strict):
    # Requests must carry "authorization: Bearer <token>" (gRPC metadata / HTTP header).
    bearer_token: SecretStr = Field(min_length=1)


class EndpointSettings(_Strict):
    endpoint: str  # host:port; port 0 picks a free port (tests)
    tls: ServerTLSSettings | None = None  # None: plain text
    auth: AuthSettings | None = None  # None: no authentication


class OtlpReceiverConfig(ComponentConfig):
    # Loopback by default: a wider address (0.0.0.0:4317) must be asked for. null disables.
    grpc: EndpointSettings | None = EndpointSettings(endpoint="127.0.0.1:4317")
    http: EndpointSettings | None = EndpointSettings(endpoint="127.0.0.1:4318")
    # Largest accepted request in bytes, after decompression (gRPC message / HTTP body).
    max_recv_msg_size: int = Field(16 << 20, ge=1024)
    # Also refuse profile types other than this project's cpu/off_cpu and samples outside
    # their profile's window (off by default: other senders' types are welcome).
    strict: bool = False
