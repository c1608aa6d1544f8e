"""Protocol-neutral request handling: parse, validate, decode, hand to the pipeline."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
    ExportProfilesServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from collector.component import Consumer
from collector.host import Host
from collector.model import SymbolizedBatch
from collector.otlp import decode_request, validate_request
from collector.spans import SpanBatch, decode_traces


@dataclass(slots=True)
class Outcome:
    status: Literal["ok", "invalid", "unavailable", "unimplemented"]
    message: str = ""
    response: bytes = b""


class Handler:
    """Counters: received_requests, received_samples, refused_requests_invalid,
    refused_samples_pipeline_full, traces_refused, refused_requests_oversized (HTTP); with a
    traces pipeline: received_trace_requests, received_spans, refused_spans_pipeline_full."""

    def __init__(
        self, receiver_id: str, consumer: Consumer, logger: logging.Logger, strict: bool
    ) -> None:
        self.id = receiver_id
        self.consumer = consumer
        self.log = logger
        self.strict = strict
        self.host: Host | None = None
        self._logged: set[str] = set()

    def count(self, name: str, n: int = 1) -> None:
        if self.host is not None:
            self.host.counters.add(self.id, name, n)

    def invalid(self, why: str) -> Outcome:
        self.count("refused_requests_invalid")
        if "invalid" not in self._logged:
            self._logged.add("invalid")
            self.log.warning("%s: refused an invalid request: %s (logged once)", self.id, why)
        return Outcome("invalid", why)

    def _parse(
        self, body: bytes, req: ExportProfilesServiceRequest | None
    ) -> tuple[list[SymbolizedBatch] | None, str]:
        try:
            if req is None:
                req = ExportProfilesServiceRequest.FromString(body)
            problems = validate_request(req, strict=self.strict)
            if problems:
                more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
                return None, "; ".join(problems[:3]) + more
            return decode_request(req, self.id), ""
        except DecodeError as e:
            return None, f"not an ExportProfilesServiceRequest: {e}"
        except (IndexError, ValueError, TypeError) as e:  # a validator gap: still refuse cleanly
            return None, f"could not decode: {type(e).__name__}: {e}"

    async def profiles(
        self, body: bytes, req: ExportProfilesServiceRequest | None = None
    ) -> Outcome:
        self.count("received_requests")
        # Parsing and validation are CPU work on untrusted input: keep them off the loop.
        batches, why = await asyncio.to_thread(self._parse, body, req)
        if batches is None:
            return self.invalid(why)
        refused = accepted = 0
        for b in batches:
            n = len(b.samples)
            self.count("received_samples", n)
            if self.consumer.consume(b):
                accepted += 1
            else:
                refused += 1
                self.count("refused_samples_pipeline_full", n)
        if refused and not accepted:
            return Outcome("unavailable", "pipeline is full; retry later")
        resp = ExportProfilesServiceResponse()
        if refused:
            resp.partial_success.rejected_profiles = refused
            resp.partial_success.error_message = "pipeline full for some profile types"
        return Outcome("ok", response=resp.SerializeToString())

    def takes_traces(self) -> bool:
        takes = getattr(self.consumer, "takes", None)
        return bool(takes is not None and takes("traces"))

    async def spans(self, body: bytes) -> Outcome:
        """A traces export, when a traces pipeline takes this receiver."""
        if not self.takes_traces():
            return self.traces()
        self.count("received_trace_requests")
        try:
            batch: SpanBatch = await asyncio.to_thread(decode_traces, body, self.id)
        except DecodeError as e:
            return self.invalid(f"not an ExportTraceServiceRequest: {e}")
        self.count("received_spans", batch.span_count)
        if not self.consumer.consume(batch):
            self.count("refused_spans_pipeline_full", batch.span_count)
            return Outcome("unavailable", "traces pipeline is full; retry later")
        return Outcome("ok", response=ExportTraceServiceResponse().SerializeToString())

    def traces(self) -> Outcome:
        """Refused while no traces pipeline takes this receiver: answering "ok" would tell
        the sender its spans were delivered while they were thrown away."""
        self.count("traces_refused")
        why = "this collector has no traces pipeline; it accepts OTLP profiles only"
        if "traces" not in self._logged:
            self._logged.add("traces")
            self.log.warning(
                "%s: refused a traces export: %s (logged once; counted as traces_refused)",
                self.id,
                why,
            )
        return Outcome("unimplemented", why)
