"""The gVisor sandbox pool: nodes that run untrusted agent tools under gVisor's runsc.

An agent type with `sandbox: gvisor` runs its pods with the RuntimeClass `gvisor`, whose
handler `runsc` is a containerd runtime only the sandbox pool's nodes register. The
RuntimeClass's scheduling sends those pods to the pool and tolerates its taint, so no
other pod lands there and no sandboxed pod lands elsewhere.

How a node gets runsc (EKS AL2023 managed nodes, the stock AMI):

1. `nodeadm-config.service` runs before cloud-init and writes containerd's config, merging
   the NodeConfig part of the user data below: one extra runtime, `runsc`. The runtime is
   written in containerd's version-2 schema (`io.containerd.grpc.v1.cri`), which nodeadm
   accepts on containerd 1 and, on containerd 2, migrates to version 3 after merging; a
   version-3 key would make nodeadm fail on a containerd 1 AMI.
2. cloud-init then runs the shell part: it downloads the pinned gVisor release (since
   release 20260907 one tarball holding runsc, containerd-shim-runsc-v1 and the
   `gvisor-bin/` helpers runsc looks for beside itself), checks it against the release's
   SHA-512 file, and installs it in /usr/local/bin, on containerd's PATH. A failed
   download or check fails the script, and the node never joins.
3. `nodeadm-run.service` starts containerd and the kubelet after cloud-init is done, so
   the runtime exists before the first pod.
"""

from __future__ import annotations

from typing import Any

import yaml

from components.compute.nodes import Taint

RUNTIME_CLASS = "gvisor"
HANDLER = "runsc"
SANDBOX_POOL = "sandbox"
SANDBOX_LABEL = "swarmstack.io/sandbox"
SANDBOX_TAINT = Taint(SANDBOX_LABEL, RUNTIME_CLASS, "NO_SCHEDULE")
RELEASES_URL = "https://storage.googleapis.com/gvisor/releases/release"
INSTALL_DIR = "/usr/local/bin"
BOUNDARY = "==SWARMSTACK-SANDBOX=="


def containerd_runtime_toml() -> str:
    """The containerd runtime `runsc`, as nodeadm merges it into the node's config."""
    return (
        "version = 2\n"
        f'[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{HANDLER}]\n'
        'runtime_type = "io.containerd.runsc.v1"\n'
    )


def node_config() -> dict[str, Any]:
    """The NodeConfig part: only the containerd runtime (EKS adds the cluster's own)."""
    return {
        "apiVersion": "node.eks.aws/v1alpha1",
        "kind": "NodeConfig",
        "spec": {"containerd": {"config": containerd_runtime_toml()}},
    }


def install_script(release: str) -> str:
    """The cloud-init shell part that installs gVisor `release` (e.g. 20260928.0)."""
    url = f"{RELEASES_URL}/{release}/x86_64"
    return f"""#!/bin/bash
# Installs gVisor {release} for the containerd runtime "{HANDLER}" (swarmstack sandbox pool).
set -euo pipefail
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
curl --fail --silent --show-error --location --retry 5 --retry-connrefused \\
  --remote-name "{url}/gvisor.tar.bz2" \\
  --remote-name "{url}/gvisor.tar.bz2.sha512"
sha512sum --check --strict gvisor.tar.bz2.sha512
tar --extract --bzip2 --file gvisor.tar.bz2 --no-same-owner
install --mode 0755 runsc containerd-shim-runsc-v1 "{INSTALL_DIR}/"
rm -rf "{INSTALL_DIR}/gvisor-bin"
cp -r gvisor-bin "{INSTALL_DIR}/gvisor-bin"
chmod -R a+rX "{INSTALL_DIR}/gvisor-bin"
"{INSTALL_DIR}/runsc" --version
"""


def user_data(release: str) -> str:
    """The launch template's user data: a MIME multi-part document with the NodeConfig
    and the install script (EKS appends its own NodeConfig for the cluster)."""
    parts = [
        ("application/node.eks.aws", "---\n" + yaml.safe_dump(node_config(), sort_keys=False)),
        ('text/x-shellscript; charset="us-ascii"', install_script(release)),
    ]
    body = "".join(
        f"--{BOUNDARY}\nContent-Type: {content_type}\n\n{content}\n"
        for content_type, content in parts
    )
    return (
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/mixed; boundary="{BOUNDARY}"\n\n'
        f"{body}--{BOUNDARY}--\n"
    )


def runtime_class_body() -> dict[str, Any]:
    """The RuntimeClass `gvisor`: the handler, and scheduling onto the sandbox pool."""
    return {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": RUNTIME_CLASS},
        "handler": HANDLER,
        "scheduling": {
            "nodeSelector": {SANDBOX_LABEL: RUNTIME_CLASS},
            "tolerations": [
                {
                    "key": SANDBOX_TAINT.key,
                    "operator": "Equal",
                    "value": SANDBOX_TAINT.value,
                    "effect": SANDBOX_TAINT.kubernetes_effect,
                }
            ],
        },
    }
