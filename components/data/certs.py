"""cert-manager and the stack's own certificate authority for the data stores' TLS.

cert-manager comes in as a pinned Helm release (chart `cert-manager` from
charts.jetstack.io; the version and every value key below were read from the chart's
`values.yaml` at that tag). The stack's CA is bootstrapped the usual way: a self-signed
ClusterIssuer signs one CA Certificate (its key never leaves cert-manager's namespace),
and a CA ClusterIssuer signs every server certificate with it. Clients in another
namespace get the CA certificate through a bundle Certificate issued in their namespace
by the same issuer: cert-manager writes the issuing CA into its Secret as `ca.crt`.

How a renewed certificate reaches a server is the server's business: Qdrant re-reads
its HTTPS certificate every `tls.cert_ttl` seconds; Redis does not re-read files by
itself, so the session store runs a reloader sidecar (components/data/redis.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.specs import CostLabels

CHART = "cert-manager"
CHART_VERSION = "v1.21.1"
CHART_REPOSITORY = "https://charts.jetstack.io"
NAMESPACE = "cert-manager"
RELEASE_NAME = "cert-manager"
API_VERSION = "cert-manager.io/v1"

# Every client namespace gets this Secret (key `ca.crt`) from its bundle Certificate.
CA_BUNDLE_SECRET = "swarmstack-data-ca"
CA_BUNDLE_KEY = "ca.crt"
# The CA certificate lives ten years; servers' certificates 90 days, renewed 30 days early.
CA_DURATION = "87600h"
SERVER_DURATION = "2160h"
SERVER_RENEW_BEFORE = "720h"


def cert_manager_values() -> dict[str, Any]:
    """Helm values: CRDs installed (and kept on uninstall), two replicas of each part, each
    with a PodDisruptionBudget that allows one eviction, metrics on."""
    pdb = {"enabled": True, "maxUnavailable": 1}
    return {
        "crds": {"enabled": True, "keep": True},
        "replicaCount": 2,
        "podDisruptionBudget": pdb,
        "webhook": {"replicaCount": 2, "podDisruptionBudget": pdb},
        "cainjector": {"replicaCount": 2, "podDisruptionBudget": pdb},
        "prometheus": {"enabled": True},
    }


@dataclass(frozen=True)
class IssuerRef:
    """A cert-manager issuer reference (`spec.issuerRef` of a Certificate)."""

    name: str
    kind: str = "ClusterIssuer"
    group: str = "cert-manager.io"

    def wire(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind, "group": self.group}


def ca_issuer_name(stack: str) -> str:
    return f"swarmstack-{stack}-ca"


def server_dns_names(service: str, headless: str, namespace: str) -> list[str]:
    """Every name a client may dial: the Service, its namespace forms, and each pod of the
    headless Service (`<pod>.<headless>.<ns>.svc...`)."""
    names: list[str] = []
    for host in (service, headless):
        names += [host, f"{host}.{namespace}", f"{host}.{namespace}.svc"]
        names.append(f"{host}.{namespace}.svc.cluster.local")
    names += [f"*.{headless}.{namespace}.svc", f"*.{headless}.{namespace}.svc.cluster.local"]
    return names


def server_certificate_spec(
    *, secret_name: str, dns_names: Sequence[str], issuer: IssuerRef, labels: dict[str, str]
) -> dict[str, Any]:
    """A server Certificate's spec: ECDSA P-256, a fresh key at every renewal."""
    return {
        "secretName": secret_name,
        "secretTemplate": {"labels": labels},
        "duration": SERVER_DURATION,
        "renewBefore": SERVER_RENEW_BEFORE,
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "usages": ["server auth", "digital signature", "key encipherment"],
        "dnsNames": list(dns_names),
        "issuerRef": issuer.wire(),
    }


def ca_bundle_certificate_spec(issuer: IssuerRef, namespace: str) -> dict[str, Any]:
    """The Certificate whose Secret carries the CA (`ca.crt`) into a client namespace.

    Its own key pair is a client certificate nobody is asked to present."""
    return {
        "secretName": CA_BUNDLE_SECRET,
        "commonName": f"swarmstack-ca-bundle.{namespace}",
        "duration": SERVER_DURATION,
        "renewBefore": SERVER_RENEW_BEFORE,
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "usages": ["client auth", "digital signature"],
        "issuerRef": issuer.wire(),
    }


def certificate(
    resource_name: str,
    *,
    name: str,
    namespace: pulumi.Input[str],
    spec: dict[str, Any],
    labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.apiextensions.CustomResource:
    """A cert-manager Certificate (CustomResource specs are sent as written: camelCase)."""
    return k8s.apiextensions.CustomResource(
        resource_name,
        api_version=API_VERSION,
        kind="Certificate",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace, labels=labels),
        spec=spec,
        opts=opts,
    )


def store_certificate(
    resource_name: str,
    *,
    name: str,
    headless: str,
    namespace: str,
    issuer: IssuerRef,
    secret_labels: dict[str, str],
    labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.apiextensions.CustomResource:
    """The server Certificate of a store behind Service `name` and headless Service
    `headless`; cert-manager writes it to the Secret `<name>-tls`."""
    return certificate(
        resource_name,
        name=name,
        namespace=namespace,
        spec=server_certificate_spec(
            secret_name=f"{name}-tls",
            dns_names=server_dns_names(name, headless, namespace),
            issuer=issuer,
            labels=secret_labels,
        ),
        labels=labels,
        opts=opts,
    )


@dataclass(frozen=True)
class CertManagerArgs:
    stack: str
    cost_labels: CostLabels
    # Namespaces whose pods must trust the stack's CA (e.g. the agents'): each gets
    # the Secret CA_BUNDLE_SECRET with key `ca.crt`.
    client_namespaces: Sequence[str] = ()


class CertManager(pulumi.ComponentResource):
    """cert-manager (pinned release), the stack's CA and its ClusterIssuer."""

    release: k8s.helm.v3.Release
    issuer: IssuerRef

    def __init__(
        self, name: str, args: CertManagerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("swarmstack:data:CertManager", name, None, opts)
        labels = args.cost_labels.as_labels()
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=NAMESPACE,
                labels={
                    **labels,
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            k8s.helm.v3.ReleaseArgs(
                name=RELEASE_NAME,
                chart=CHART,
                version=CHART_VERSION,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPOSITORY),
                namespace=NAMESPACE,
                values=cert_manager_values(),
                cleanup_on_fail=True,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
        )
        after_crds = pulumi.ResourceOptions(parent=self, depends_on=[self.release])
        bootstrap = k8s.apiextensions.CustomResource(
            f"{name}-selfsigned",
            api_version=API_VERSION,
            kind="ClusterIssuer",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=f"swarmstack-{args.stack}-selfsigned", labels=labels
            ),
            spec={"selfSigned": {}},
            opts=after_crds,
        )
        ca_secret = f"swarmstack-{args.stack}-ca"
        ca = certificate(
            f"{name}-ca",
            name=ca_secret,
            namespace=NAMESPACE,
            spec={
                "isCA": True,
                "commonName": f"swarmstack {args.stack} data CA",
                "secretName": ca_secret,
                "duration": CA_DURATION,
                "privateKey": {"algorithm": "ECDSA", "size": 256},
                "issuerRef": IssuerRef(f"swarmstack-{args.stack}-selfsigned").wire(),
            },
            labels=labels,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[bootstrap]),
        )
        self.issuer = IssuerRef(ca_issuer_name(args.stack))
        issuer = k8s.apiextensions.CustomResource(
            f"{name}-ca-issuer",
            api_version=API_VERSION,
            kind="ClusterIssuer",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=self.issuer.name, labels=labels),
            # A ClusterIssuer reads its CA Secret from cert-manager's own namespace.
            spec={"ca": {"secretName": ca_secret}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ca]),
        )
        for ns in args.client_namespaces:
            certificate(
                f"{name}-bundle-{ns}",
                name=CA_BUNDLE_SECRET,
                namespace=ns,
                spec=ca_bundle_certificate_spec(self.issuer, ns),
                labels=labels,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[issuer]),
            )
        self.register_outputs(
            {
                "chartVersion": self.release.version,
                "issuer": self.issuer.name,
                "caBundleSecret": CA_BUNDLE_SECRET,
            }
        )
