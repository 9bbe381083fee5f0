"""ElastiCache node prices for the node types the session store allows (cost estimate only).

On-demand $/node-hour in us-east-1 for the Redis OSS engine, recorded 2026-10 from the
ElastiCache pricing page as remembered, not re-checked against the page here: treat them
as estimates. Valkey nodes are listed about 20% below Redis OSS (`VALKEY_PRICE_FACTOR`,
also an estimate). Backup storage beyond the free allowance and data transfer are not
included.
"""

from __future__ import annotations

PRICES_AS_OF = "2026-10"
ESTIMATE = True  # no primary source checked

REDIS_USD_PER_NODE_HOUR: dict[str, float] = {
    "cache.t4g.medium": 0.065,
    "cache.m7g.large": 0.158,
    "cache.m7g.xlarge": 0.315,
    "cache.r7g.large": 0.219,
    "cache.r7g.xlarge": 0.437,
    "cache.r7g.2xlarge": 0.873,
}
VALKEY_PRICE_FACTOR = 0.8


def elasticache_hourly_usd(node_type: str, nodes: int, engine: str) -> float:
    """$/hour of one replication group: every node (primary and replicas) is billed."""
    price = REDIS_USD_PER_NODE_HOUR[node_type]
    if engine == "valkey":
        price *= VALKEY_PRICE_FACTOR
    return price * nodes
