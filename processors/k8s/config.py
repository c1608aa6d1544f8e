"""Settings of the k8s processor (defaults in one place)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from collector.component import ComponentConfig
from collector.config.duration import Duration


class DownwardApiEnv(ComponentConfig):
    """Names of the environment variables a pod spec sets from the downward API."""

    pod_name: str = "POD_NAME"  # fieldRef: metadata.name
    namespace_name: str = "POD_NAMESPACE"  # fieldRef: metadata.namespace
    pod_uid: str = "POD_UID"  # fieldRef: metadata.uid
    node_name: str = "NODE_NAME"  # fieldRef: spec.nodeName


class K8sConfig(ComponentConfig):
    # kubelet: every process is looked up by its container.id in the kubelet's pod list
    # (a DaemonSet: one collector per node). env: every process belongs to the pod the
    # collector runs in (a sidecar with shareProcessNamespace), named by downward-API
    # variables; k8s.container.name is not known there.
    source: Literal["kubelet", "env"] = "kubelet"
    # The kubelet's pod list. The read-only port (10255) serves it over plain HTTP without
    # credentials where it is enabled; the authenticated port (10250) needs https, a
    # service-account token (token_file) and the kubelet's CA (ca_file) or
    # insecure_skip_verify (the kubelet's certificate is often self-signed).
    endpoint: str = Field("http://127.0.0.1:10255/pods", pattern=r"^https?://")
    token_file: str = ""
    ca_file: str = ""
    insecure_skip_verify: bool = False
    refresh_interval: Duration = Field(30.0, gt=0)
    # A container id not in the list (a pod that started since) asks for a refresh at
    # once, but not more often than this.
    min_refresh_interval: Duration = Field(5.0, ge=0)
    timeout: Duration = Field(10.0, gt=0)
    max_response_bytes: int = Field(64 << 20, ge=1024)  # a pod list is ~5-20 KB per pod
    max_containers: int = Field(65536, ge=1)  # entries kept from one list
    env: DownwardApiEnv = DownwardApiEnv()

    @model_validator(mode="after")
    def _token_needs_https(self) -> K8sConfig:
        if self.token_file and not self.endpoint.startswith("https://"):
            raise ValueError("token_file is sent only over https: use an https:// endpoint")
        return self
