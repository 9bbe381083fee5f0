"""EC2 instance types swarmstack knows how to size and price.

Prices are on-demand Linux $/hour in us-east-1, as AWS's EC2 price list gave them on
`PRICES_CHECKED_ON`; every instance row was checked against that list (the fixed
EKS and VPC charges at the end were not). They feed the plan's cost estimate only,
and a stack in another region is still priced as us-east-1.
`p5e.48xlarge` has no on-demand price for us-east-1 in that list: its figure is
an estimate carried from earlier, unverified.
vCPUs, memory and GPUs per type are EC2's; GPU memory is per GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.compute.mig import GPUS, GpuSpec

# The date of the AWS price list the hourly prices below were checked against.
PRICES_CHECKED_ON = "2026-07-20"


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory_gib: int
    on_demand_usd_per_hour: float
    gpu_model: str | None = None
    gpus: int = 0

    @property
    def gpu(self) -> GpuSpec | None:
        return GPUS[self.gpu_model] if self.gpu_model else None

    @property
    def mig_capable(self) -> bool:
        gpu = self.gpu
        return gpu is not None and gpu.mig_capable


INSTANCE_TYPES: dict[str, InstanceType] = {
    t.name: t
    for t in [
        # GPU instances with MIG
        InstanceType("p4d.24xlarge", 96, 1152, 21.9576, "A100-40GB", 8),
        InstanceType("p4de.24xlarge", 96, 1152, 27.447, "A100-80GB", 8),
        InstanceType("p5.4xlarge", 16, 256, 6.88, "H100-80GB", 1),
        InstanceType("p5.48xlarge", 192, 2048, 55.04, "H100-80GB", 8),
        InstanceType("p5e.48xlarge", 192, 2048, 68.8, "H200-141GB", 8),  # estimate, see above
        InstanceType("p5en.48xlarge", 192, 2048, 63.296, "H200-141GB", 8),
        InstanceType("p6-b200.48xlarge", 192, 2048, 113.9328, "B200-180GB", 8),
        # GPU instances without MIG
        InstanceType("g5.xlarge", 4, 16, 1.006, "A10G-24GB", 1),
        InstanceType("g5.12xlarge", 48, 192, 5.672, "A10G-24GB", 4),
        InstanceType("g5.48xlarge", 192, 768, 16.288, "A10G-24GB", 8),
        InstanceType("g6.xlarge", 4, 16, 0.8048, "L4-24GB", 1),
        InstanceType("g6.2xlarge", 8, 32, 0.9776, "L4-24GB", 1),
        InstanceType("g6.4xlarge", 16, 64, 1.3232, "L4-24GB", 1),
        InstanceType("g6.12xlarge", 48, 192, 4.6016, "L4-24GB", 4),
        InstanceType("g6.48xlarge", 192, 768, 13.3504, "L4-24GB", 8),
        InstanceType("g6e.xlarge", 4, 32, 1.861, "L40S-48GB", 1),
        InstanceType("g6e.12xlarge", 48, 384, 10.4926, "L40S-48GB", 4),
        InstanceType("g6e.48xlarge", 192, 1536, 30.1312, "L40S-48GB", 8),
        # General purpose (system pools)
        InstanceType("m6i.large", 2, 8, 0.096),
        InstanceType("m6i.xlarge", 4, 16, 0.192),
        InstanceType("m6i.2xlarge", 8, 32, 0.384),
        InstanceType("m7i.large", 2, 8, 0.1008),
        InstanceType("m7i.xlarge", 4, 16, 0.2016),
        InstanceType("m7i.2xlarge", 8, 32, 0.4032),
        InstanceType("m7i.4xlarge", 16, 64, 0.8064),
    ]
}

GPU_INSTANCE_TYPES = sorted(n for n, t in INSTANCE_TYPES.items() if t.gpus)
MIG_INSTANCE_TYPES = sorted(n for n, t in INSTANCE_TYPES.items() if t.mig_capable)
CPU_INSTANCE_TYPES = sorted(n for n, t in INSTANCE_TYPES.items() if not t.gpus)

# Fixed hourly charges of an EKS cluster (us-east-1).
EKS_CONTROL_PLANE_USD_PER_HOUR = 0.10
NAT_GATEWAY_USD_PER_HOUR = 0.045
# An interface VPC endpoint is charged per AZ it has a network interface in.
INTERFACE_ENDPOINT_USD_PER_AZ_HOUR = 0.01
