"""Writes each window as Brendan Gregg's collapsed stacks (``*.folded``)."""

from __future__ import annotations

from functools import partial

from collector.component import CreateSettings
from collector.encoding import encode_folded
from collector.exporthelper import PeriodicFileExporter
from exporters.folded.config import FoldedConfig


class FoldedExporter(PeriodicFileExporter):
    def __init__(self, settings: CreateSettings, config: FoldedConfig) -> None:
        encode = partial(encode_folded, span_names=config.span_names)
        super().__init__(settings, config, encode, ".folded")
