"""The runtime: component graph, bounded queues, start/shutdown order."""

from collector.pipeline.service import Service

__all__ = ["Service"]
