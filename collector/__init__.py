"""Core of the eBPF profiling collector: config, registry, pipeline runtime, CLI, data model."""

__version__ = "0.1.0"
