"""A typed model of the PrometheusRule custom resource (prometheus-operator,
`monitoring.coreos.com/v1`) as swarmstack declares it.

Source: the operator's CRD (`example/prometheus-operator-crd/
monitoring.coreos.com_prometheusrules.yaml`, operator v0.82.2): `spec` is required;
`spec.groups[]` is a list keyed by `name` (required, unique), may have `interval` (a
duration); each rule needs `expr` and one of `record` or `alert`; `for` is a duration;
`labels` and `annotations` are string maps (annotations only on alerts). Durations follow
the CRD's pattern. Fields the stack does not use are not modelled, so
they are refused: check a new field against the CRD before adding it.
"""

# ruff: noqa: N815

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
Duration = Annotated[str, Field(pattern=DURATION)]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class Metadata(_Closed):
    name: str
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class RuleModel(_Closed):
    record: str | None = None
    alert: str | None = None
    expr: str = Field(min_length=1)
    for_: Duration | None = Field(default=None, alias="for")
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> RuleModel:
        if (self.record is None) == (self.alert is None):
            raise ValueError("a rule has exactly one of record or alert")
        if self.record is not None and (self.for_ is not None or self.annotations):
            raise ValueError("a recording rule has no for or annotations")
        return self


class Group(_Closed):
    name: str = Field(min_length=1)
    interval: Duration | None = None
    rules: list[RuleModel]


class Spec(_Closed):
    groups: list[Group]

    @model_validator(mode="after")
    def _unique(self) -> Spec:
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise ValueError(f"group names must be unique (a list keyed by name): {names}")
        return self


class PrometheusRuleModel(_Closed):
    apiVersion: Literal["monitoring.coreos.com/v1"]
    kind: Literal["PrometheusRule"]
    metadata: Metadata
    spec: Spec


def prometheus_rule_problems(body: dict[str, Any]) -> list[str]:
    """What the CRD model refuses in a monitoring.coreos.com resource (empty: accepted)."""
    if body.get("kind") != "PrometheusRule":
        return [f"{body.get('apiVersion')}/{body.get('kind')} is not modelled (PrometheusRule is)"]
    try:
        PrometheusRuleModel.model_validate(body)
    except ValidationError as exc:
        return [
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        ]
    return []
