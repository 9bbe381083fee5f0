"""Amazon MSK (provisioned, standard brokers) broker types swarmstack knows how to price.

Prices are on-demand $/broker-hour in us-east-1 as listed on the Amazon MSK pricing
page (recorded 2026-10; not re-checked against a primary source in the session that
wrote this table: treat them as estimates and override in the cost summary when a
quote differs). Storage is charged per GiB-month of provisioned EBS per broker.
They feed the plan's cost estimate only.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2026-10"


@dataclass(frozen=True)
class MskBrokerType:
    name: str
    vcpus: int
    memory_gib: int
    usd_per_broker_hour: float


MSK_BROKER_TYPES: dict[str, MskBrokerType] = {
    t.name: t
    for t in [
        MskBrokerType("kafka.t3.small", 2, 2, 0.0456),
        MskBrokerType("kafka.m5.large", 2, 8, 0.21),
        MskBrokerType("kafka.m5.xlarge", 4, 16, 0.42),
        MskBrokerType("kafka.m5.2xlarge", 8, 32, 0.84),
        MskBrokerType("kafka.m5.4xlarge", 16, 64, 1.68),
        MskBrokerType("kafka.m7g.large", 2, 8, 0.204),
        MskBrokerType("kafka.m7g.xlarge", 4, 16, 0.408),
        MskBrokerType("kafka.m7g.2xlarge", 8, 32, 0.816),
        MskBrokerType("kafka.m7g.4xlarge", 16, 64, 1.632),
    ]
}

# Provisioned broker storage (EBS), $ per GiB-month.
MSK_STORAGE_USD_PER_GIB_MONTH = 0.10
HOURS_PER_MONTH = 730


def msk_monthly_usd(broker_type: str, brokers: int, storage_gib_per_broker: int) -> float:
    """Broker hours plus provisioned storage of one cluster for a month, $."""
    hourly = MSK_BROKER_TYPES[broker_type].usd_per_broker_hour * brokers
    storage = MSK_STORAGE_USD_PER_GIB_MONTH * storage_gib_per_broker * brokers
    return round(hourly * HOURS_PER_MONTH + storage, 2)
