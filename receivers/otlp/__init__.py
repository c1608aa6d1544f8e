"""The otlp receiver: OTLP profiles over gRPC and HTTP into the pipeline as symbolized data."""

from __future__ import annotations

from collector.component import CreateSettings, Factory
from receivers.otlp.config import OtlpReceiverConfig
from receivers.otlp.receiver import OtlpReceiver


def create(settings: CreateSettings, config: OtlpReceiverConfig) -> OtlpReceiver:
    return OtlpReceiver(settings, config)


factory = Factory(
    type="otlp",
    kind="receiver",
    config_model=OtlpReceiverConfig,
    create=create,
    output="symbolized",
    signals=("profiles", "traces"),
    description="Receives OTLP profiles (gRPC :4317, HTTP :4318) from other collectors/SDKs.",
)
