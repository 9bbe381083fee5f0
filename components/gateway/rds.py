"""The gateway's Postgres on Amazon RDS (`gateway.database.mode: rds`), the production option.

Why the pilot does not use it: an RDS instance typically takes 10-20 minutes to create and
bills by the hour whether used or not (Multi-AZ doubles the instance price), for a pilot
whose Postgres holds spend counters and logs that the key Job can rebuild
(components/gateway/database.py). Production wants what the in-cluster StatefulSet cannot
give: automated backups with point-in-time restore, a synchronous
standby in another AZ with automatic failover, and deletion protection.

`GatewayRds` declares, in the stack's VPC (the cluster's, or `cluster.network`):

- a DB subnet group over the private subnets (no route from the internet), and
  `publiclyAccessible` false;
- a security group admitting 5432 only from the cluster's node security group (the pods'
  source address with the VPC CNI), no other ingress;
- a parameter group with `rds.force_ssl=1`: the server refuses a connection without TLS,
  and the proxy's DATABASE_URL says `sslmode=require`;
- the instance: storage encrypted with the stack's customer-managed KMS key (the one the
  cluster envelope-encrypts Secrets with, also the managed stores' key), the master
  password from the `gatewayDatabasePassword` Pulumi secret, the engine version pinned,
  backups, deletion protection and a final snapshot as configured, Performance Insights
  (same key) when asked for.

Inside the mesh the gateway reaches the instance through a ServiceEntry on the region's
RDS domain (port 5432, plain TCP: Postgres negotiates TLS inside its own protocol, so the
sidecar cannot route it by SNI) and a NetworkPolicy to the VPC's CIDR on 5432
(components/traffic/mesh.py, stacks/agents.py `managed_store_policies`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import pulumi
import pulumi_aws as aws

from components.compute.nodes import aws_tags
from components.data.network import ManagedNetwork, place_node_only_store
from components.gateway.database import DATABASE, PORT, USER
from components.gateway.spec import RDS_PARAMETER_FAMILY, RdsDatabase
from components.specs import CostLabels

COMPONENT = "gateway-database"


def parameters() -> dict[str, str]:
    """The instance's parameter group: TLS required for every connection."""
    return {"rds.force_ssl": "1"}


def final_snapshot_name(identifier: str) -> str:
    return f"{identifier}-final"


def database_url(password: str, host: str) -> str:
    """The URL the proxy connects to RDS with (the password URL-quoted; a secret). TLS is
    required: the server refuses anything else (`rds.force_ssl`), and the client refuses
    to fall back to plaintext."""
    return (
        f"postgresql://{USER}:{quote(password, safe='')}@{host}:{PORT}/{DATABASE}?sslmode=require"
    )


@dataclass(frozen=True)
class GatewayRdsArgs:
    spec: RdsDatabase
    identifier: str  # the instance's name in the account (`<cluster>-gateway-db`)
    network: ManagedNetwork
    password: pulumi.Input[str]  # a Pulumi secret
    cost_labels: CostLabels


class GatewayRds(pulumi.ComponentResource):
    """The gateway's Postgres as an RDS instance, its subnet group, security group and
    parameter group."""

    address: pulumi.Output[str]

    def __init__(
        self, name: str, args: GatewayRdsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("swarmstack:gateway:Rds", name, None, opts)
        spec, network = args.spec, args.network
        tags = aws_tags(args.cost_labels.as_labels(), component=COMPONENT)
        child = pulumi.ResourceOptions(parent=self)
        placement = place_node_only_store(
            name,
            network,
            service="rds",
            port=PORT,
            subnet_group_name=f"{args.identifier}-subnets",
            subnets_description="Private subnets of the gateway's Postgres",
            group_description="Gateway Postgres: 5432 from the cluster's nodes only",
            rule_description="Postgres (TLS) from the EKS nodes and pods",
            tags=tags,
            opts=child,
        )
        params = aws.rds.ParameterGroup(
            f"{name}-params",
            name=f"{args.identifier}-params",
            family=RDS_PARAMETER_FAMILY,
            description="Gateway Postgres: TLS required",
            parameters=[
                aws.rds.ParameterGroupParameterArgs(name=k, value=v, apply_method="pending-reboot")
                for k, v in parameters().items()
            ],
            tags=tags,
            opts=child,
        )
        instance = aws.rds.Instance(
            f"{name}-instance",
            identifier=args.identifier,
            engine="postgres",
            engine_version=spec.engine_version,
            auto_minor_version_upgrade=False,
            instance_class=spec.instance_class,
            storage_type="gp3",
            allocated_storage=spec.allocated_storage_gib,
            max_allocated_storage=spec.max_allocated_storage_gib,
            storage_encrypted=True,
            kms_key_id=network.kms_key_arn,
            db_name=DATABASE,
            username=USER,
            password=pulumi.Output.secret(args.password),
            port=PORT,
            db_subnet_group_name=placement.subnet_group_name,
            vpc_security_group_ids=[placement.security_group_id],
            publicly_accessible=False,
            parameter_group_name=params.name,
            multi_az=spec.multi_az,
            backup_retention_period=spec.backup_retention_days,
            backup_window=spec.backup_window,
            maintenance_window=spec.maintenance_window,
            copy_tags_to_snapshot=True,
            deletion_protection=spec.deletion_protection,
            skip_final_snapshot=not spec.final_snapshot,
            final_snapshot_identifier=(
                final_snapshot_name(args.identifier) if spec.final_snapshot else None
            ),
            performance_insights_enabled=spec.performance_insights,
            performance_insights_kms_key_id=(
                network.kms_key_arn if spec.performance_insights else None
            ),
            performance_insights_retention_period=7 if spec.performance_insights else None,
            enabled_cloudwatch_logs_exports=["postgresql"],
            apply_immediately=False,
            tags=tags,
            opts=child,
        )
        # Known once AWS created the instance (absent in a plan).
        self.address = instance.address.apply(lambda a: a or "")
        self.register_outputs({"address": self.address, "identifier": instance.identifier})
