"""Writes each window as a gzip-compressed pprof profile.proto (``*.pb.gz``)."""

from __future__ import annotations

from functools import partial

from collector.component import CreateSettings
from collector.encoding import encode_pprof
from collector.exporthelper import PeriodicFileExporter
from exporters.pprof.config import PprofConfig


class PprofExporter(PeriodicFileExporter):
    def __init__(self, settings: CreateSettings, config: PprofConfig) -> None:
        encode = partial(encode_pprof, gzip_level=config.gzip_level)
        super().__init__(settings, config, encode, ".pb.gz")
