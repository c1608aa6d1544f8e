"""Spans from traces pipelines, kept just long enough to link profile samples to them.

``SpanBatch`` is what a receiver hands a traces pipeline (the request as received, for
forwarding unchanged, plus the few fields correlation needs); ``SpanHub`` is the host
service a traces pipeline publishes to and correlate processors subscribe to (components
never import each other); ``SpanIndex`` is the bounded, time-windowed index per (pid, tid).
"""

from collector.spans.batch import NO_THREAD, Span, SpanBatch, decode_traces
from collector.spans.hub import HUB_KEY, SpanHub
from collector.spans.index import SpanIndex

__all__ = ["HUB_KEY", "NO_THREAD", "Span", "SpanBatch", "SpanHub", "SpanIndex", "decode_traces"]
