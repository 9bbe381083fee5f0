"""What swarmstack relies on in KEDA's `keda` Helm chart (kedacore/charts), at the release
it was read.

`components.scale.keda.keda_values` renders Helm values for one chart version,
`CHART_VERSION`. Every value key path it may set is listed in `VALUE_KEYS` with what the
chart does with it at that release, as read in the release's `keda/values.yaml` and the
templates that consume the keys (`templates/manager/deployment.yaml`,
`templates/metrics-server/deployment.yaml`, `templates/webhooks/deployment.yaml`,
`templates/_helpers.tpl`). A test holds every key path the component renders to this list,
and the stack config accepts no other chart version.

Checked at v2.20.2 (chart and app v2.20.2, the latest 2.20.x tag):

- The chart installs the `keda.sh` CRDs (ScaledObject, ScaledJob, TriggerAuthentication,
  ClusterTriggerAuthentication) while `crds.install` is true (the default).
- The operator's pods carry `app: keda-operator` and `app.kubernetes.io/name:
  keda-operator` (the `operator.name` default); the operator runs the scalers, so it is
  the pod that dials Prometheus and Kafka. The metrics API server asks the operator over
  gRPC and dials no scaler source itself.
- The operator's service account is `keda-operator` (`serviceAccount.operator.name`).
  `podIdentity.aws.irsa.enabled` annotates it (templates/manager/serviceaccount.yaml) with
  `eks.amazonaws.com/role-arn` from `podIdentity.aws.irsa.roleArn`, the audience
  `sts.amazonaws.com`, regional STS endpoints and a token expiration (the defaults kept).
  The kafka scaler of KEDA v2.20.2 (pkg/scalers/kafka_scaler.go) reads MSK with
  `sasl: oauthbearer`, `saslTokenProvider: aws_msk_iam`, `awsRegion` and `tls: enable`;
  with a TriggerAuthentication `podIdentity.provider: aws` and no `roleArn`, it signs with
  the operator's own credentials (pkg/scalers/aws/aws_common.go).
- The defaults are already restricted pod security (runAsNonRoot, drop ALL, read-only
  root filesystem, RuntimeDefault seccomp on every container), so no security key is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components import chart_values
from components.chart_values import ValueKey

CHART = "keda"
CHART_VERSION = "2.20.2"
REPOSITORY = "https://kedacore.github.io/charts"
RELEASE = "keda"
OPERATOR_POD_LABELS: dict[str, str] = {"app.kubernetes.io/name": "keda-operator"}
OPERATOR_SERVICE_ACCOUNT = "keda-operator"

VALUE_KEYS: dict[str, ValueKey] = {
    "crds.install": ValueKey("scalar", "true: the chart installs the keda.sh CRDs"),
    "additionalLabels": ValueKey(
        "map", "labels on every object of the chart (the keda.labels helper)"
    ),
    "podLabels.keda": ValueKey("map", "extra labels on the operator's pods"),
    "podLabels.metricsAdapter": ValueKey("map", "extra labels on the metrics API server's pods"),
    "podLabels.webhooks": ValueKey("map", "extra labels on the admission webhooks' pods"),
    "podIdentity.aws.irsa.enabled": ValueKey(
        "scalar", "true: IRSA annotations on the operator's service account"
    ),
    "podIdentity.aws.irsa.roleArn": ValueKey(
        "scalar", "the IAM role ARN of the operator's service account (eks.amazonaws.com/role-arn)"
    ),
}


def unchecked_value_paths(values: Mapping[str, Any]) -> list[str]:
    """Key paths of `values` that were not checked against the chart at CHART_VERSION."""
    return chart_values.unchecked_value_paths(values, VALUE_KEYS)
