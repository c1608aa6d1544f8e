"""Encoders of the one profile model (collector.model.ProfileSet) into file formats.

Every encoder is a pure function ``ProfileSet -> bytes`` that reads the model's tables as they
are; exporters (files, and later Pyroscope) only decide where the bytes go.
"""

from collector.encoding.folded import encode_folded, folded_totals
from collector.encoding.pprof import encode_pprof, pprof_message, sample_types

__all__ = ["encode_folded", "encode_pprof", "folded_totals", "pprof_message", "sample_types"]
