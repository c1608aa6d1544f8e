"""Exporter sending machinery shared by network exporters: settings models, a bounded sending
queue that drops and counts when full, retries with jittered exponential backoff, and a
batching profile exporter built on them; the queue may persist to disk (storage)."""

from collector.sending.queue import QueueItem, SendingQueue
from collector.sending.retry import Backoff, PermanentError, RetryableError, send_with_retry
from collector.sending.settings import (
    Duration,
    ProfilesExporterConfig,
    QueueSettings,
    RetrySettings,
    StorageSettings,
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
    "StorageSettings",
    "TLSSettings",
    "send_with_retry",
]
