"""The otlp_http exporter: OTLP profiles as protobuf over HTTP (POST /v1development/profiles)."""

from __future__ import annotations

import gzip
from functools import partial

from collector.component import CreateSettings, Factory
from collector.host import Host
from collector.model import ProfileSet
from collector.otlp import encode_profile_set
from collector.sending.exporter import BatchingProfileExporter, window_settings
from exporters.otlp_http.config import OtlpHttpExporterConfig
from exporters.otlp_http.transport import HttpTransport


def _encode(config: OtlpHttpExporterConfig, ps: ProfileSet) -> bytes:
    req = encode_profile_set(ps, service_name=config.service_name, timestamps=config.timestamps)
    body = req.SerializeToString()
    return gzip.compress(body, compresslevel=6) if config.compression == "gzip" else body


class OtlpHttpExporter(BatchingProfileExporter):
    """The shared batching exporter; its transport also counts responses it cannot read."""

    transport: HttpTransport

    async def start(self, host: Host) -> None:
        self.transport.attach(host.counters, self.id, self.log)
        await super().start(host)


def create(settings: CreateSettings, config: OtlpHttpExporterConfig) -> OtlpHttpExporter:
    enc = partial(_encode, config)
    return OtlpHttpExporter(settings, config, HttpTransport(config), enc)


factory = Factory(
    type="otlp_http",
    kind="exporter",
    config_model=OtlpHttpExporterConfig,
    create=create,
    input="profiles",
    window=window_settings,
    description="OTLP profiles as protobuf over HTTP (POST /v1development/profiles).",
)
