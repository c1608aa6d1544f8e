"""The otlp exporter: OTLP profiles over gRPC (ProfilesService/Export)."""

from __future__ import annotations

from functools import partial

from collector.component import CreateSettings, Factory
from collector.model import ProfileSet
from collector.otlp import encode_profile_set
from collector.sending.exporter import BatchingProfileExporter, window_settings
from exporters.otlp.config import OtlpExporterConfig
from exporters.otlp.transport import GrpcTransport


def _encode(config: OtlpExporterConfig, ps: ProfileSet) -> bytes:
    req = encode_profile_set(ps, service_name=config.service_name, timestamps=config.timestamps)
    return req.SerializeToString()


def create(settings: CreateSettings, config: OtlpExporterConfig) -> BatchingProfileExporter:
    return BatchingProfileExporter(
        settings, config, GrpcTransport(config), partial(_encode, config)
    )


factory = Factory(
    type="otlp",
    kind="exporter",
    config_model=OtlpExporterConfig,
    create=create,
    input="profiles",
    window=window_settings,
    description="OTLP profiles over gRPC to a collector or backend (ProfilesService/Export).",
)
