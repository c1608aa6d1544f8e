"""Exporter sending machinery shared by network exporters: settings models, a bounded sending
queue that drops and counts when full, retries with jittered exponential backoff, and a
batching profile exporter built on them."""

from collector.sending.queue import QueueItem, SendingQueue
from collector.sending.retry import Backoff, PermanentError, RetryableError, send_with_retry
from collector.sending.settings import (
    Duration,
    ProfilesExporterConfig,
    QueueSettings,
    RetrySettings,
    TLSSettings,
)

__all__ = [
    "Backoff",
    "Duration",
    "PermanentError",
    "ProfilesExporterConfig",
    "QueueItem",
    "QueueSettings",
    "RetrySettings",
    "RetryableError",
    "SendingQueue",
    "TLSSettings",
    "send_with_retry",
]
