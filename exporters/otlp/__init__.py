"""The otlp exporter: OTLP profiles over gRPC (ProfilesService/Export); listed in a traces
pipeline it also forwards spans unchanged (TraceService/Export)."""

from __future__ import annotations

from functools import partial
from typing import Any

from collector.component import CreateSettings, Factory
from collector.host import Host
from collector.model import ProfileSet
from collector.otlp import encode_profile_set
from collector.sending.exporter import BatchingProfileExporter, window_settings
from collector.spans import SpanBatch
from exporters.otlp.config import OtlpExporterConfig
from exporters.otlp.spans import SpanForwarder
from exporters.otlp.transport import GrpcTransport


def _encode(config: OtlpExporterConfig, ps: ProfileSet) -> bytes:
    req = encode_profile_set(ps, service_name=config.service_name, timestamps=config.timestamps)
    return req.SerializeToString()


class OtlpExporter(BatchingProfileExporter):
    def __init__(self, settings: CreateSettings, config: OtlpExporterConfig) -> None:
        self.grpc = GrpcTransport(config)
        super().__init__(settings, config, self.grpc, partial(_encode, config))
        self.spans = SpanForwarder(settings.id, config, settings.logger)

    async def start(self, host: Host) -> None:
        await super().start(host)
        self.spans.start(host, self.grpc.channel)

    async def export(self, item: Any) -> None:
        if isinstance(item, SpanBatch):
            await self.spans.export(item)
        else:
            await super().export(item)

    async def shutdown(self) -> None:
        await self.spans.shutdown()  # before the channel closes
        await super().shutdown()


def create(settings: CreateSettings, config: OtlpExporterConfig) -> OtlpExporter:
    return OtlpExporter(settings, config)


factory = Factory(
    type="otlp",
    kind="exporter",
    config_model=OtlpExporterConfig,
    create=create,
    input="profiles",
    window=window_settings,
    signals=("profiles", "traces"),
    description="OTLP profiles over gRPC to a collector or backend (ProfilesService/Export); "
    "in a traces pipeline, spans unchanged (TraceService/Export).",
)
