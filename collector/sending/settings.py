"""Settings models shared by network exporters (defaults live here, in one place).

Header values are secrets (tokens, basic auth): they are ``SecretStr`` so logs, reprs and a
printed config show ``**********``; only the transport calls ``get_secret_value()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from collector.component import ComponentConfig
from collector.config.duration import Duration


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLSSettings(_Settings):
    insecure: bool = False  # plain text (no TLS at all)
    ca_file: Path | None = None  # trust this CA instead of the system roots
    cert_file: Path | None = None  # client certificate (mutual TLS)
    key_file: Path | None = None
    insecure_skip_verify: bool = False  # TLS without checking the server (otlp_http; gRPC refuses)
    server_name_override: str = ""  # name to check the server certificate against

    def tls_options(self) -> list[str]:
        """The settings that only mean something when TLS is used, as the user spells them."""
        on = {
            "ca_file": self.ca_file is not None,
            "cert_file": self.cert_file is not None,
            "key_file": self.key_file is not None,
            "insecure_skip_verify": self.insecure_skip_verify,
            "server_name_override": bool(self.server_name_override),
        }
        return [f"tls.{k}" for k, v in on.items() if v]

    @model_validator(mode="after")
    def _consistent(self) -> TLSSettings:
        # An option that cannot take effect is refused, never accepted and ignored.
        if self.insecure and self.tls_options():
            raise ValueError(
                f"tls.insecure: true is plain text, so {', '.join(self.tls_options())} would "
                "be ignored: remove them, or remove tls.insecure to use TLS"
            )
        if self.insecure_skip_verify and (self.ca_file is not None or self.server_name_override):
            raise ValueError(
                "tls.insecure_skip_verify checks no certificate, so tls.ca_file and "
                "tls.server_name_override would be ignored: keep one or the other"
            )
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file go together")
        for f in (self.ca_file, self.cert_file, self.key_file):
            if f is not None and not f.is_file():
                raise ValueError(f"tls file not found: {f}")
        return self


class RetrySettings(_Settings):
    enabled: bool = True
    initial_interval: Duration = 5.0
    max_interval: Duration = 30.0
    max_elapsed_time: Duration = 300.0  # 0 = retry forever
    multiplier: float = Field(1.5, ge=1.0)
    randomization_factor: float = Field(0.5, ge=0.0, le=1.0)


class StorageSettings(_Settings):
    # Where queued requests are kept across restarts and crashes: one subdirectory (0700)
    # per exporter, owned by one collector at a time (flock).
    directory: Path


class QueueSettings(_Settings):
    queue_size: int = Field(100, ge=1)  # requests (one per flushed profile type), not samples
    # Payload bytes waiting (encoded, compressed requests); 0 = bounded by queue_size only.
    # One request larger than this is still taken when the queue is empty.
    max_bytes: int = Field(64 << 20, ge=0)
    num_consumers: int = Field(1, ge=1)
    storage: StorageSettings | None = None  # None: in memory, lost at exit


class ProfilesExporterConfig(ComponentConfig):
    """What the otlp and otlp_http exporters share."""

    endpoint: str
    tls: TLSSettings = TLSSettings()
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    compression: Literal["gzip", "none"] = "gzip"
    timeout: Duration = 10.0  # per attempt
    interval: Duration = Field(10.0, gt=0)  # flush period of the batching builders
    max_batch_samples: int = Field(100_000, ge=1)  # flush a profile type early at this size
    service_name: str | None = None  # default: each process's executable name
    # Per-sample timestamps (OTLP's strength); false sends one summed value per merged sample,
    # which is smaller on the wire when windows hold many samples.
    timestamps: bool = True
    shutdown_timeout: Duration = 10.0  # how long shutdown may spend draining the queue
    sending_queue: QueueSettings = QueueSettings()
    retry_on_failure: RetrySettings = RetrySettings()

    def header_items(self) -> list[tuple[str, str]]:
        """The real header values, for the transport only: never log this."""
        return [(k.lower(), v.get_secret_value()) for k, v in self.headers.items()]
