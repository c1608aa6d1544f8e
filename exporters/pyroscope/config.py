"""Settings of the pyroscope exporter. Queueing, retries, TLS and the window settings are the
shared ones of collector.sending.settings (same names and defaults as the otlp exporters)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from collector.sending import ProfilesExporterConfig
from collector.sending.http import check_url_and_tls, uses_tls

# Pyroscope validates series labels with Prometheus' legacy rules (pkg/validation/validate.go):
# names [a-zA-Z_][a-zA-Z0-9_]*, at most 30 per series, names <= 1024 and values <= 2048 bytes.
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
MAX_LABELS = 30
MAX_NAME_LENGTH = 1024
MAX_VALUE_LENGTH = 2048
# Labels the exporter sets itself: one per profile type, and the one the UI lists apps by.
RESERVED = ("__name__",)


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BasicAuth(_Settings):
    username: str
    password: SecretStr


class RelabelRule(_Settings):
    """One Prometheus-style relabel rule over a process's labels (see README)."""

    source_labels: list[str] = Field(default_factory=list)
    separator: str = ";"
    regex: str = "(.*)"
    target_label: str = ""
    replacement: str = "$1"
    action: Literal["replace", "keep", "drop"] = "replace"

    @model_validator(mode="after")
    def _valid(self) -> RelabelRule:
        try:
            re.compile(self.regex)
        except re.error as e:
            raise ValueError(f"relabel regex {self.regex!r} does not compile: {e}") from None
        if self.action == "replace":
            if not self.target_label:
                raise ValueError("relabel action 'replace' needs target_label")
            if not LABEL_NAME.fullmatch(self.target_label):
                raise ValueError(
                    f"relabel target_label {self.target_label!r} is not a label name "
                    "([a-zA-Z_][a-zA-Z0-9_]*)"
                )
            if self.target_label in RESERVED:
                raise ValueError("relabel cannot set __name__: it is set per profile type")
        elif self.target_label:
            raise ValueError(f"relabel action {self.action!r} takes no target_label")
        if self.action != "replace" and not self.source_labels:
            raise ValueError(f"relabel action {self.action!r} needs source_labels")
        return self


class PyroscopeConfig(ProfilesExporterConfig):
    # Base URL of Pyroscope (or a proxy in front of it); the protocol's path is appended.
    endpoint: str = "http://127.0.0.1:4040"
    protocol: Literal["push", "ingest"] = "push"
    labels: dict[str, str] = Field(default_factory=dict)
    relabel: list[RelabelRule] = Field(default_factory=list)
    basic_auth: BasicAuth | None = None
    bearer_token: SecretStr | None = None
    tenant_id: str = ""  # sent as X-Scope-OrgID
    max_bytes: int = Field(4 * 1024 * 1024, ge=1024)  # per profile (uncompressed) and request
    max_stack_depth: int = Field(1000, ge=2)
    max_profile_samples: int = Field(16_000, ge=1)  # pprof samples per profile

    def base_url(self) -> str:
        return self.endpoint.rstrip("/")

    def uses_tls(self) -> bool:
        return uses_tls(self.base_url())

    @model_validator(mode="after")
    def _consistent(self) -> PyroscopeConfig:
        check_url_and_tls(self.base_url(), self.endpoint, self.tls, "http://pyroscope:4040")
        if "timestamps" in self.model_fields_set:
            raise ValueError("timestamps is not used by pyroscope: pprof has no sample times")
        if self.basic_auth is not None and self.bearer_token is not None:
            raise ValueError("basic_auth and bearer_token both set: keep one")
        if (self.basic_auth or self.bearer_token) and "authorization" in {
            k.lower() for k in self.headers
        }:
            raise ValueError("headers.Authorization and basic_auth/bearer_token both set")
        if self.tenant_id and "x-scope-orgid" in {k.lower() for k in self.headers}:
            raise ValueError("headers.X-Scope-OrgID and tenant_id both set: keep tenant_id")
        for name, value in self.labels.items():
            if not LABEL_NAME.fullmatch(name) or name.startswith("__"):
                raise ValueError(
                    f"label {name!r} is not a label name Pyroscope accepts "
                    "([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
                )
            if len(value) > MAX_VALUE_LENGTH:
                raise ValueError(f"label {name}: value longer than {MAX_VALUE_LENGTH} bytes")
        targets = {r.target_label for r in self.relabel if r.target_label}
        names = {"__name__", "service_name", *self.labels, *targets}
        if len({n for n in names if not n.startswith("__")}) + 1 > MAX_LABELS:
            raise ValueError(f"more than {MAX_LABELS} labels per series: Pyroscope refuses them")
        return self
