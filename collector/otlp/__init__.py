"""OTLP profiles (v1development) wire mapping of the one profile model: encode, decode, validate."""

from collector.otlp.decode import decode_request
from collector.otlp.encode import encode_profile_set
from collector.otlp.validate import validate_request

__all__ = ["decode_request", "encode_profile_set", "validate_request"]
