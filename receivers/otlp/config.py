"""Settings of the otlp receiver (defaults in one place)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from collector.component import ComponentConfig


class EndpointSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    endpoint: str  # host:port; port 0 picks a free port (tests)


class OtlpReceiverConfig(ComponentConfig):
    # Loopback by default: a wider address (0.0.0.0:4317) must be asked for. null disables.
    grpc: EndpointSettings | None = EndpointSettings(endpoint="127.0.0.1:4317")
    http: EndpointSettings | None = EndpointSettings(endpoint="127.0.0.1:4318")
    # Largest accepted request in bytes, after decompression (gRPC message / HTTP body).
    max_recv_msg_size: int = Field(16 << 20, ge=1024)
    # Also refuse profile types other than this project's cpu/off_cpu and samples outside
    # their profile's window (off by default: other senders' types are welcome).
    strict: bool = False
