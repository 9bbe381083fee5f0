"""Every timeout on a model call's path, rendered by one function so the hops stay ordered.

A model call leaves the agent worker, passes the caller's mesh proxy (which applies the
model's VirtualService route), optionally a gateway, and ends at vLLM. Each hop must wait
longer than the hop inside it: a hop that gives up first turns a slow but successful call
into an error while the GPU keeps generating for nobody, and the outer hop then sees a
5xx it cannot tell from a broken server. So, from the inside out:

    model e2eP99S  <  model route  <  [gateway hops]  <  worker MODEL_TIMEOUT_S

each hop `timeouts.hopMarginS` seconds above the one inside it. Without a gateway the
agent's own proxy applies the model route: it is the agent-side route. A gateway adds its
hops between the model route and the worker (its own upstream timeout, then the agent-side
route to the gateway), each one margin further out.

The worker enforces `MODEL_TIMEOUT_S` as the whole call's deadline (not only the gap
between two reads), so the outermost hop bounds the call too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import Field

from components.specs import ModelSpec, Spec

OBJECTIVE = "model e2eP99S"
MODEL_ROUTE = "model route"
WORKER = "worker MODEL_TIMEOUT_S"
GATEWAY_UPSTREAM = "gateway upstream"  # LiteLLM's timeout of one call to one model
GATEWAY_ROUTE = "gateway route"  # the agent's mesh route to the gateway Service
GATEWAY_HOPS = (GATEWAY_UPSTREAM, GATEWAY_ROUTE)


class TimeoutSpec(Spec):
    """How far apart the timeouts of a model call's hops are (`swarmstack:timeouts`)."""

    hop_margin_s: int = Field(
        default=15,
        ge=1,
        le=600,
        description="Seconds each hop of a model call waits beyond the hop inside it, "
        "starting from the model's `slo.e2eP99S` (model route, then any gateway hops, then "
        "the worker's `MODEL_TIMEOUT_S`).",
    )


@dataclass(frozen=True)
class Hop:
    name: str
    seconds: int


@dataclass(frozen=True)
class TimeoutChain:
    """One model's hops, innermost first; `hops[0]` is the objective itself."""

    model: str
    hops: tuple[Hop, ...]

    def seconds(self, name: str) -> int:
        for hop in self.hops:
            if hop.name == name:
                return hop.seconds
        raise KeyError(f"{self.model}: no hop {name!r} (hops: {[h.name for h in self.hops]})")

    @property
    def model_route_s(self) -> int:
        """The model's VirtualService route timeout."""
        return self.seconds(MODEL_ROUTE)

    @property
    def worker_s(self) -> int:
        """The worker's `MODEL_TIMEOUT_S` for calls to this model."""
        return self.seconds(WORKER)

    def disorders(self) -> list[str]:
        """Each hop that does not wait strictly longer than the one inside it."""
        return [
            f"{self.model}: {outer.name} ({outer.seconds} s) must exceed "
            f"{inner.name} ({inner.seconds} s)"
            for inner, outer in zip(self.hops, self.hops[1:], strict=False)
            if outer.seconds <= inner.seconds
        ]


def timeout_chain(
    model: ModelSpec, spec: TimeoutSpec, gateway_hops: Sequence[str] = ()
) -> TimeoutChain:
    """The hops of a call to `model`; `gateway_hops` names the gateway's hops between the
    model route and the worker, innermost first."""
    names = [MODEL_ROUTE, *gateway_hops, WORKER]
    base = model.slo.e2e_p99_s
    hops = [Hop(OBJECTIVE, base)]
    hops += [Hop(name, base + spec.hop_margin_s * (i + 1)) for i, name in enumerate(names)]
    return TimeoutChain(model.name, tuple(hops))


@dataclass(frozen=True)
class GatewayTimeouts:
    """The timeouts of calls through the gateway.

    `upstream_s` is LiteLLM's timeout of one call to each gateway model (a stack model: its
    model route plus a margin; a managed model: its `timeoutS`). A call may fall back, and
    every fallback waits its own upstream timeout, so the agent-side route to the gateway
    (one route for every model behind it) waits for the longest chain of attempts plus a
    margin, and the worker one margin more. `chains` holds each stack model's hops, so the
    plan's ordering check reads them like the chains without a gateway."""

    upstream_s: Mapping[str, int]
    route_s: int
    worker_s: int
    chains: Mapping[str, TimeoutChain]


def gateway_timeouts(
    models: Sequence[ModelSpec],
    spec: TimeoutSpec,
    *,
    managed_timeouts_s: Mapping[str, int],
    fallbacks: Mapping[str, Sequence[str]],
) -> GatewayTimeouts:
    """The gateway's hops for the stack's `models` and the managed models' timeouts;
    `fallbacks` maps a gateway model to the models tried after it (the config rules have
    refused names that are not gateway models)."""
    margin = spec.hop_margin_s
    direct = {m.name: timeout_chain(m, spec) for m in models}
    upstream = {name: chain.model_route_s + margin for name, chain in direct.items()}
    upstream.update(managed_timeouts_s)
    longest = max(
        upstream[name] + sum(upstream[f] for f in fallbacks.get(name, ())) for name in upstream
    )
    route_s = longest + margin
    worker_s = route_s + margin
    chains = {
        m.name: TimeoutChain(
            m.name,
            (
                Hop(OBJECTIVE, m.slo.e2e_p99_s),
                Hop(MODEL_ROUTE, direct[m.name].model_route_s),
                Hop(GATEWAY_UPSTREAM, upstream[m.name]),
                Hop(GATEWAY_ROUTE, route_s),
                Hop(WORKER, worker_s),
            ),
        )
        for m in models
    }
    return GatewayTimeouts(upstream_s=upstream, route_s=route_s, worker_s=worker_s, chains=chains)
