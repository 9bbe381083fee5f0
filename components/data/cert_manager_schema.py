"""A typed model of the cert-manager custom resources swarmstack declares.

Source: the CRDs of cert-manager v1.21.1 (the pinned chart,
`deploy/crds/cert-manager.io_certificates.yaml` and `..._clusterissuers.yaml` at that
tag), `cert-manager.io/v1`: required keys, enums and types of every field used here.
Fields the stack does not use are not modelled, so they are refused: a new field must be
checked against the CRD before it is added. No registry package ships these schemas.
"""

# Field names are the CRDs' own (camelCase), so the model reads like the CRD.
# ruff: noqa: N815

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from components.data.certs import API_VERSION, CHART_VERSION


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Metadata(_Closed):
    name: str
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class IssuerRef(_Closed):
    name: str  # required
    kind: str | None = None
    group: str | None = None


class PrivateKey(_Closed):
    algorithm: Literal["RSA", "ECDSA", "Ed25519"] | None = None
    encoding: Literal["PKCS1", "PKCS8"] | None = None
    rotationPolicy: Literal["Never", "Always"] | None = None
    size: int | None = None


class SecretTemplate(_Closed):
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


KeyUsage = Literal[
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
    "server auth", "client auth", "code signing", "email protection", "s/mime",
    "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
    "microsoft sgc", "netscape sgc",
]  # fmt: skip


class CertificateSpec(_Closed):
    secretName: str  # required
    issuerRef: IssuerRef  # required
    secretTemplate: SecretTemplate | None = None
    commonName: str | None = None
    dnsNames: list[str] | None = None
    duration: str | None = None
    renewBefore: str | None = None
    isCA: bool | None = None
    privateKey: PrivateKey | None = None
    usages: list[KeyUsage] | None = None


class Certificate(_Closed):
    apiVersion: Literal["cert-manager.io/v1"]
    kind: Literal["Certificate"]
    metadata: Metadata
    spec: CertificateSpec


class SelfSigned(_Closed):
    crlDistributionPoints: list[str] | None = None


class CaIssuer(_Closed):
    secretName: str  # required


class ClusterIssuerSpec(_Closed):
    selfSigned: SelfSigned | None = None
    ca: CaIssuer | None = None


class ClusterIssuer(_Closed):
    apiVersion: Literal["cert-manager.io/v1"]
    kind: Literal["ClusterIssuer"]
    metadata: Metadata
    spec: ClusterIssuerSpec


MODELS: dict[str, type[_Closed]] = {"Certificate": Certificate, "ClusterIssuer": ClusterIssuer}


class CertManagerResourceError(ValueError):
    """A cert-manager CR the model refuses; the message names the resource and each field."""


def cert_manager_problems(body: dict[str, Any]) -> list[str]:
    """What the CRD model refuses in one cert-manager resource (empty: accepted), each
    with its field path."""
    kind = str(body.get("kind"))
    if body.get("apiVersion") != API_VERSION or kind not in MODELS:
        return [
            f"{body.get('apiVersion')}/{kind} is not a cert-manager kind swarmstack models "
            f"({', '.join(f'{API_VERSION}/{k}' for k in MODELS)})"
        ]
    try:
        MODELS[kind].model_validate(body)
    except ValidationError as exc:
        return [
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        ]
    return []


def check_cert_manager_resource(body: dict[str, Any]) -> None:
    """Raise CertManagerResourceError naming the resource and every refused field."""
    problems = cert_manager_problems(body)
    if problems:
        meta: dict[str, Any] = body.get("metadata") or {}
        name = f"{body.get('kind')} {meta.get('namespace', '')}/{meta.get('name', '?')}"
        raise CertManagerResourceError(
            f"{name} does not match the cert-manager {CHART_VERSION} CRD: " + "; ".join(problems)
        )
