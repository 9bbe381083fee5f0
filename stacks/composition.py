"""The one composition every stack is built from: the cluster, its system pool, the MIG GPU
pools, vLLM, the Istio mesh, the agents' data plane, the gateway, the agents and the
monitoring release, each as far as the stack's config enables it.

A stack's `phase` never selects code here: it tightens the config's validation and
defaults (stacks/config.py, `phase_problems`) and the policy pack's levels
(policies/pack.py, `phase_levels`), so pilot and production declare the same resources
from different values."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.agents.spec import workload_name
from components.compute.cluster import Cluster, ClusterArgs
from components.compute.gpu_node_pool import (
    GpuNodePool,
    GpuNodePoolArgs,
    GpuOperator,
    GpuOperatorArgs,
)
from components.compute.irsa import Irsa
from components.data.kafka import EventBus
from components.observe.dashboards import DashboardInputs, Dashboards, DashboardsArgs
from components.observe.rules_component import build_alert_rules
from components.serving.model_serving import (
    HF_TOKEN_KEY,
    ModelPriorityClasses,
    ModelServing,
    ModelServingArgs,
)
from components.traffic.mesh import Mesh, MeshArgs, mesh_network_policies, mesh_resources
from components.traffic.tenancy import Tenancy, TenancyArgs, agent_network_policies
from components.traffic.timeouts import timeout_chain
from stacks.agents import build_agents, managed_store_policies, managed_stores
from stacks.autoscaling import build_autoscaling, scaling_network_policies
from stacks.config import StackConfig, serving_placement
from stacks.data_plane import build_data_plane, managed_network, network_policies, read_secrets
from stacks.gateway import agent_gateway_selector, build_gateway, gateway_policies, gateway_traffic
from stacks.observability import (
    build_observability,
    build_tracing,
    otlp_endpoint,
    read_monitoring_secrets,
    tracing_network_policies,
)
from stacks.quotas import stack_quotas
from stacks.regional import build_regional

HF_TOKEN_SECRET = "huggingface-token"


def build(config: StackConfig, region: str, hf_token: pulumi.Output[str] | None) -> None:
    labels = config.cost_labels
    cluster = Cluster(
        "cluster", ClusterArgs(spec=config.cluster, cost_labels=labels, region=region)
    )
    on_cluster = pulumi.ResourceOptions(providers=[cluster.provider])

    irsa: Irsa | None = None
    if cluster.eks is not None:
        eks = cluster.eks
        irsa = Irsa(oidc_provider_arn=eks.oidc_provider_arn, oidc_issuer=eks.oidc_issuer)
        for pool in config.gpu_pools:
            GpuNodePool(
                f"gpu-{pool.name}",
                GpuNodePoolArgs(
                    spec=pool,
                    cost_labels=labels,
                    cluster_name=eks.cluster_name,
                    node_role_arn=eks.node_role_arn,
                    subnet_ids=eks.private_subnet_ids,
                    availability_zones=eks.availability_zones,
                    depends_on=eks.node_group_dependencies,
                    mig_strategy=config.gpu_operator.mig_strategy,
                ),
            )
    else:
        pulumi.log.warn(
            "cluster.mode is 'existing': GPU node groups are not created; label and taint "
            "the existing GPU nodes as the README describes"
        )

    operator = GpuOperator(
        "gpu-operator",
        GpuOperatorArgs(spec=config.gpu_operator, pools=config.gpu_pools, cost_labels=labels),
        opts=on_cluster,
    )
    tenancy = Tenancy(
        "tenancy",
        TenancyArgs(
            namespaces=config.namespaces,
            cost_labels=labels,
            extra_policies={
                **network_policies(config),
                **agent_network_policies(
                    config.namespaces,
                    config.agents,
                    agent_gateway_selector() if config.gateway is not None else None,
                ),
                **gateway_policies(config),
                **tracing_network_policies(config),
                **scaling_network_policies(config),
                **managed_store_policies(config),
                **mesh_network_policies(config.agents, config.namespaces),
            },
            quotas=stack_quotas(config),
            teams=config.tenancy.teams,
        ),
        opts=on_cluster,
    )
    mesh = Mesh(
        "mesh",
        MeshArgs(
            spec=config.mesh,
            cost_labels=labels,
            resources=mesh_resources(
                [(m, timeout_chain(m, config.timeouts)) for m in config.models],
                config.agents,
                config.namespaces,
                region,
                stores=managed_stores(config, region),
                gateway=gateway_traffic(config),
            ),
            depends_on=[tenancy],
        ),
        opts=on_cluster,
    )
    build_observability(
        config,
        monitoring_namespace=tenancy.monitoring_namespace,
        secrets=read_monitoring_secrets(config),
        on_cluster=on_cluster,
        depends_on=[tenancy],
    )
    build_tracing(
        config,
        monitoring_namespace=tenancy.monitoring_namespace,
        on_cluster=pulumi.ResourceOptions(providers=[cluster.provider], depends_on=[tenancy]),
    )
    buses: list[EventBus] = []
    contract = build_data_plane(
        config,
        stack=pulumi.get_stack(),
        region=region,
        eks=cluster.eks,
        irsa=irsa,
        secrets=read_secrets(config),
        on_cluster=pulumi.ResourceOptions(providers=[cluster.provider], depends_on=[tenancy]),
        buses=buses,
    )

    hf_secret_name: str | None = None
    if hf_token is not None and any(m.weights.source == "huggingface" for m in config.models):
        secret = k8s.core.v1.Secret(
            "huggingface-token",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=HF_TOKEN_SECRET,
                namespace=tenancy.models_namespace,
                labels=labels.as_labels(),
            ),
            type="Opaque",
            string_data={HF_TOKEN_KEY: hf_token},
            opts=pulumi.ResourceOptions(parent=tenancy, providers=[cluster.provider]),
        )
        hf_secret_name = HF_TOKEN_SECRET
        pulumi.export("huggingFaceTokenSecret", secret.metadata.apply(lambda m: m.name))

    endpoints: dict[str, pulumi.Output[str]] = {}
    scale_targets: dict[str, list[pulumi.Resource]] = {}
    priorities = ModelPriorityClasses("model-priorities", labels, opts=on_cluster)
    for model in config.models:
        if irsa is None and model.weights.source == "s3":
            pulumi.log.warn(
                f"model {model.name} reads weights from S3 but the cluster is not managed here, "
                "so no IRSA role is created: the pods use the nodes' own AWS identity"
            )
        serving = ModelServing(
            f"model-{model.name}",
            ModelServingArgs(
                spec=model,
                namespace=tenancy.models_namespace,
                namespace_name=config.namespaces.models,
                image=config.images.vllm,
                placement=serving_placement(model, config),
                cost_labels=labels,
                irsa=irsa,
                hf_token_secret=hf_secret_name if model.weights.source == "huggingface" else None,
                otlp_traces_endpoint=otlp_endpoint(config),
            ),
            # The injector must run before model pods exist, or they start without a proxy.
            opts=pulumi.ResourceOptions(
                providers=[cluster.provider],
                depends_on=[operator, mesh.releases["istiod"], priorities],
            ),
        )
        endpoints[model.name] = serving.endpoint
        scale_targets[f"model-{model.name}"] = [serving.deployment]

    # The gateway starts after the mesh's injector (its pods need their proxy) and the
    # data plane (its Redis); the agents start after it has registered their keys.
    gateway = build_gateway(
        config,
        contract=contract,
        network=managed_network(config, cluster.eks),
        agents_namespace=tenancy.agents_namespace,
        on_cluster=on_cluster,
        depends_on=[tenancy, mesh.releases["istiod"]],
    )
    workloads = build_agents(
        config,
        contract=contract,
        eks=cluster.eks,
        irsa=irsa,
        agents_namespace=tenancy.agents_namespace,
        on_cluster=on_cluster,
        depends_on=[tenancy] if gateway is None else [tenancy, gateway],
    )
    for agent, workload in zip(config.agents, workloads, strict=True):
        scale_targets[workload_name(agent)] = [workload.deployment]

    build_autoscaling(
        config,
        region=region,
        eks=cluster.eks,
        irsa=irsa,
        agents=config.agents,
        contract=contract,
        targets=scale_targets,
        on_cluster=pulumi.ResourceOptions(
            providers=[cluster.provider], depends_on=[tenancy, operator]
        ),
    )

    # Rules and dashboards live in the monitoring namespace Tenancy declares.
    in_monitoring = pulumi.ResourceOptions.merge(
        on_cluster, pulumi.ResourceOptions(depends_on=[tenancy])
    )
    build_alert_rules(config, in_monitoring)
    Dashboards(
        "dashboards",
        DashboardsArgs(DashboardInputs.from_config(config), namespace=config.namespaces.monitoring),
        opts=in_monitoring,
    )

    if config.regional is not None and cluster.eks is not None and buses:
        build_regional(
            config,
            region,
            cluster.eks,
            buses[0],
            pulumi.ResourceOptions.merge(
                on_cluster,
                pulumi.ResourceOptions(depends_on=[tenancy, mesh.releases["istiod"]]),
            ),
        )

    pulumi.export("phase", config.phase)
    pulumi.export("costLabels", config.cost_labels.as_labels())
    if cluster.eks is not None:
        pulumi.export("clusterName", cluster.eks.cluster_name)
        pulumi.export("kubeconfig", cluster.eks.kubeconfig)
    pulumi.export("modelEndpoints", endpoints)
    traces = otlp_endpoint(config)
    if traces is not None:
        pulumi.export("otlpEndpoint", traces)
    if contract is not None:
        pulumi.export("dataPlane", contract.as_output())
    pulumi.export(
        "slos",
        {
            m.name: {
                "tier": m.slo.tier,
                "ttftP99Ms": m.slo.ttft_p99_ms,
                "itlP99Ms": m.slo.itl_p99_ms,
                "e2eP99S": m.slo.e2e_p99_s,
            }
            for m in config.models
        },
    )
