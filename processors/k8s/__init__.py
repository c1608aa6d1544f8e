"""The ``k8s`` processor: k8s.pod.name, k8s.namespace.name, k8s.container.name per process."""

from __future__ import annotations

from collector.component import CreateSettings, Factory
from processors.k8s.config import K8sConfig
from processors.k8s.processor import K8sProcessor


def _create(settings: CreateSettings, config: K8sConfig) -> K8sProcessor:
    return K8sProcessor(settings, config)


factory = Factory(
    type="k8s",
    kind="processor",
    config_model=K8sConfig,
    create=_create,
    input="symbolized",
    output="symbolized",
    description="Add Kubernetes pod, namespace and container names to each process.",
)

__all__ = ["K8sConfig", "K8sProcessor", "factory"]
