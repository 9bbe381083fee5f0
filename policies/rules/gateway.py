"""The model gateway: agents reach models only through it, its credentials come only from
Secrets, and its salt key is never rewritten.

A stack "has a gateway" when a workload's pods are labelled `app.kubernetes.io/component:
model-gateway`. Agents are the workloads whose pods are labelled
`app.kubernetes.io/component: agent`; model Services are the Services that select pods
labelled `model-server`. A principal names a service account as Istio does
(`cluster.local/ns/<namespace>/sa/<name>`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)

from policies.framework import (
    WORKLOAD_KINDS,
    Rule,
    as_dict,
    as_list,
    containers,
    k8s_kind,
    metadata_of,
    name_of,
    namespace_of,
    of_kind,
    pod_metadata,
    pod_spec,
    reporter,
    selects,
    stack_reporter,
    string_map,
)

COMPONENT_LABEL = "app.kubernetes.io/component"
GATEWAY_COMPONENT = "model-gateway"
KEY_JOB_COMPONENT = "gateway-keys"
AGENT_COMPONENT = "agent"
MODEL_COMPONENT = "model-server"
SALT_KEY_LABEL = "swarmstack.io/gateway-salt-key"
# What a credential looks like in a rendered value: LiteLLM keys (`sk-...`), bearer
# tokens, URLs carrying a password.
KEY_VALUE = re.compile(r"(\bsk-[A-Za-z0-9_\-]{12,}|\bBearer\s+\S{12,}|://[^/\s:@]+:[^/\s@]+@)")
# Config keys and environment variables that hold credentials.
KEY_NAME = re.compile(r"(key|token|password|secret|database_url|credential)", re.IGNORECASE)
ENV_REFERENCE = "os.environ/"


def _workloads(
    resources: Sequence[PolicyResource],
) -> Iterator[tuple[PolicyResource, str, Mapping[str, Any], dict[str, str]]]:
    for r in resources:
        kind = k8s_kind(r.resource_type)
        if kind not in WORKLOAD_KINDS:
            continue
        pod = pod_spec(kind, r.props)
        if pod is None:
            continue
        labels = string_map(pod_metadata(kind, r.props).get("labels"))
        yield r, kind, pod, labels


def _principal(namespace: str, pod: Mapping[str, Any]) -> str:
    account = str(pod.get("serviceAccountName") or "default")
    return f"cluster.local/ns/{namespace}/sa/{account}"


def _model_hosts(resources: Sequence[PolicyResource]) -> list[tuple[str, str]]:
    """(namespace, name) of every Service that selects model-server pods."""
    servers = [
        (namespace_of(r.props), labels)
        for r, _, _, labels in _workloads(resources)
        if labels.get(COMPONENT_LABEL) == MODEL_COMPONENT
    ]
    found: list[tuple[str, str]] = []
    for svc in of_kind(resources, "Service"):
        ns = namespace_of(svc.props)
        selector = string_map(as_dict(svc.props.get("spec")).get("selector"))
        if selector and any(
            s_ns == ns and selects({"matchLabels": selector}, labels) for s_ns, labels in servers
        ):
            found.append((ns, name_of(svc)))
    return found


def _names_host(value: str, namespace: str, name: str) -> bool:
    """Whether a value (a URL, a host) points at Service `name` in `namespace`."""
    return (
        re.search(rf"(^|[/@]){re.escape(name)}\.{re.escape(namespace)}(\.|:|/|$)", value)
        is not None
    )


def _admits(policy: Mapping[str, Any], principals: set[str], namespaces: set[str]) -> list[str]:
    """The agent principals (or namespaces) an ALLOW AuthorizationPolicy's rules admit."""
    spec = as_dict(policy.get("spec"))
    if str(spec.get("action") or "ALLOW") != "ALLOW":
        return []
    admitted: list[str] = []
    for rule in as_list(spec.get("rules")):
        sources = as_list(as_dict(rule).get("from"))
        if not sources:
            admitted.append("every caller (a rule without `from`)")
        for source in sources:
            src = as_dict(as_dict(source).get("source"))
            for p in as_list(src.get("principals")):
                if str(p) in principals or str(p) == "*":
                    admitted.append(str(p))
            for n in as_list(src.get("namespaces")):
                if str(n) in namespaces or str(n) == "*":
                    admitted.append(f"namespace {n}")
    return admitted


def _agents_through_gateway(args: StackValidationArgs, report: ReportViolation) -> None:
    workloads = list(_workloads(args.resources))
    if not any(labels.get(COMPONENT_LABEL) == GATEWAY_COMPONENT for *_, labels in workloads):
        return
    hosts = _model_hosts(args.resources)
    agent_principals: set[str] = set()
    agent_namespaces: set[str] = set()
    model_pods: list[tuple[str, dict[str, str]]] = []
    for r, _, pod, labels in workloads:
        ns = namespace_of(r.props)
        if labels.get(COMPONENT_LABEL) == MODEL_COMPONENT:
            model_pods.append((ns, labels))
        if labels.get(COMPONENT_LABEL) != AGENT_COMPONENT:
            continue
        agent_principals.add(_principal(ns, pod))
        agent_namespaces.add(ns)
        say = stack_reporter(r, report)
        for label, c in containers(pod):
            for e in as_list(c.get("env")):
                env = as_dict(e)
                value = str(env.get("value") or "")
                for svc_ns, svc in hosts:
                    if _names_host(value, svc_ns, svc):
                        say(
                            f"{label} env {env.get('name')} points at model Service "
                            f"{svc_ns}/{svc} directly, but the stack has a model gateway: "
                            "agents call models through it"
                        )
    # Agents' namespaces other than the models' own may share one with the gateway: only
    # policies that select model pods are read.
    for ap in of_kind(args.resources, "AuthorizationPolicy", "kubernetes:security.istio.io/"):
        ns = namespace_of(ap.props)
        selector = as_dict(as_dict(ap.props.get("spec")).get("selector"))
        if not any(p_ns == ns and selects(selector, labels) for p_ns, labels in model_pods):
            continue
        admitted = _admits(ap.props, agent_principals, agent_namespaces - {ns})
        if admitted:
            stack_reporter(ap, report)(
                f"lets agents call model servers directly ({', '.join(sorted(set(admitted)))}), "
                "but the stack has a model gateway: admit only the gateway's service account"
            )


# One `key: value` line of a YAML mapping (a list item's first key included), as the
# gateway's rendered config writes scalars. The pack's environment has no YAML parser.
YAML_SCALAR = re.compile(
    r"^(?P<indent>\s*)(-\s+)?(?P<key>[A-Za-z0-9_.\-]+):\s+(?P<value>\S.*?)\s*$"
)


def _check_config_map(args: ResourceValidationArgs, say: Callable[[str], None]) -> None:
    data = string_map(args.props.get("data"))
    for file, text in sorted(data.items()):
        if KEY_VALUE.search(text):
            say(f"data {file} holds a credential in clear: reference it (os.environ/NAME)")
        if not file.endswith((".yaml", ".yml")):
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            match = YAML_SCALAR.match(line)
            if match is None or not KEY_NAME.search(match["key"]):
                continue
            value = match["value"].strip("'\"")
            if not value.startswith(ENV_REFERENCE):
                say(
                    f"data {file} line {number}: {match['key']} is set in clear; give it as "
                    f"{ENV_REFERENCE}<NAME> and set the variable from a Secret"
                )


def _check_env(pod: Mapping[str, Any], say: Callable[[str], None]) -> None:
    for label, c in containers(pod):
        for e in as_list(c.get("env")):
            env = as_dict(e)
            name = str(env.get("name") or "")
            value = env.get("value")
            if value is None:
                continue
            if KEY_VALUE.search(str(value)):
                say(f"{label} env {name} holds a credential in clear")
            elif KEY_NAME.search(name) and not name.endswith(("_FILE", "_PATH", "_DIR", "_CERTS")):
                say(
                    f"{label} env {name} is a plain value: take it from a Secret "
                    "(valueFrom.secretKeyRef) or a mounted Secret file"
                )


def _gateway_keys_from_secrets(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind = k8s_kind(args.resource_type)
    say = reporter(args.resource_type, args.props, args.name, report)
    if kind == "ConfigMap":
        labels = string_map(metadata_of(args.props).get("labels"))
        if labels.get(COMPONENT_LABEL) == GATEWAY_COMPONENT:
            _check_config_map(args, say)
        return
    if kind not in WORKLOAD_KINDS:
        return
    pod = pod_spec(kind, args.props)
    labels = string_map(pod_metadata(kind, args.props).get("labels"))
    if pod is not None and labels.get(COMPONENT_LABEL) in (GATEWAY_COMPONENT, KEY_JOB_COMPONENT):
        _check_env(pod, say)


def _salt_key_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if k8s_kind(args.resource_type) != "Secret":
        return
    labels = string_map(metadata_of(args.props).get("labels"))
    if labels.get(SALT_KEY_LABEL) != "true":
        return
    say = reporter(args.resource_type, args.props, args.name, report)
    opts = args.opts
    if not opts.protect:
        say("is not protected: a `pulumi destroy` or a rename would delete the salt key")
    ignored = set(opts.ignore_changes)
    if not {"stringData", "data"} <= ignored:
        say(
            "does not ignore changes to stringData and data: a changed config secret would "
            "rewrite the salt key and make every credential the gateway stored unreadable"
        )


RULES: list[Rule] = [
    Rule(
        "agents-through-gateway",
        "traffic",
        "With a model gateway, no agent reaches a model Service directly: no agent's "
        "environment names a model Service, and no AuthorizationPolicy of the model servers "
        "admits an agent's service account or namespace.",
        "Point the agent at the gateway (MODEL_BASE_URL) and admit only the gateway's service "
        "account in the model servers' AuthorizationPolicy.",
        check_stack=_agents_through_gateway,
    ),
    Rule(
        "gateway-keys-from-secrets",
        "kubernetes-security",
        "The gateway's ConfigMaps and pods hold no credential: its config refers to them as "
        "os.environ/NAME, and each variable comes from a Secret (secretKeyRef or a mounted "
        "file), never a plain value.",
        "Render credentials as os.environ/NAME in the proxy config and set NAME with "
        "valueFrom.secretKeyRef (or mount the Secret as a file).",
        check=_gateway_keys_from_secrets,
    ),
    Rule(
        "gateway-salt-key-pinned",
        "kubernetes-security",
        "The gateway's salt key Secret (labelled swarmstack.io/gateway-salt-key) is protected "
        "and ignores changes to its data, so no later deploy rewrites or deletes it.",
        "Declare the Secret with protect=True, retain_on_delete=True and "
        "ignore_changes=['stringData', 'data'].",
        check=_salt_key_pinned,
    ),
]
