"""The ``symbolize`` processor: raw addresses -> interned frames (kernel, native, DWARF)."""

from __future__ import annotations

from collector.component import CreateSettings, Factory
from processors.symbolize.config import SymbolizeConfig
from processors.symbolize.processor import SymbolizeProcessor
from processors.symbolize.symbolizer import KERNEL_MAPPING_NAME, Symbolizer


def _create(settings: CreateSettings, config: SymbolizeConfig) -> SymbolizeProcessor:
    return SymbolizeProcessor(settings, config)


factory = Factory(
    type="symbolize",
    kind="processor",
    config_model=SymbolizeConfig,
    create=_create,
    input="raw",
    output="symbolized",
    description="Resolve kernel and user addresses to functions, files and lines.",
)

__all__ = ["KERNEL_MAPPING_NAME", "SymbolizeConfig", "SymbolizeProcessor", "Symbolizer", "factory"]
