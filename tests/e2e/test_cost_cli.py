"""`swarmstack cost` on a real redis-server holding known usage records, priced with the
pilot stack's own GPU prices.

Prices by hand (stacks/Pulumi.pilot.yaml): both models run on pool h100-mig, a
p5.4xlarge (1 x H100-80GB at $6.88/hour on-demand) split into [3g.40gb, 3g.40gb], each
replica on one 3g.40gb slice, priced at its 3 of the layout's 6 compute slices (the cost
rules' `replica_usd_per_hour`): 6.88 * 3 / 6 = $3.44/hour a replica, with 1 replica each
(models[].replicas.min).

- Qwen/Qwen2.5-7B-Instruct at 100 tokens/s = 360,000 tokens/hour:
  q = 3.44 / 360,000 $/token (9.5555...e-6)
- meta-llama/Llama-3.1-8B-Instruct at 50 tokens/s = 180,000 tokens/hour: l = 2q

Records in the window (input + output tokens):

    r1 researcher  s1 alice search   qwen   1000 + 400  = 1400 -> 1400 q
    r2 researcher  s1 alice search   llama   600 + 400  = 1000 -> 1000 l = 2000 q
    r3 concierge   s2 bob   support  qwen   2000 + 1500 = 3500 -> 3500 q

and one record two hours old (outside `--window 1h`, so not counted).

    researcher = s1 = alice = search  = 3400 q = 11,696 / 360,000 = 0.0324888888...
    concierge  = s2 = bob   = support = 3500 q = 12,040 / 360,000 = 0.0334444444...
    total                             = 6900 q = 23,736 / 360,000 = 0.0659333333...
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from stacks.cli import main

ROOT = Path(__file__).resolve().parents[2]
QWEN = "Qwen/Qwen2.5-7B-Instruct"
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
Q = 3.44 / 360_000


def record(who: str, model: str, i: int, o: int) -> Any:
    """`who` is "agent session user team"."""
    agent, session, user, team = who.split()
    return {
        "ts": f"{time.time():.3f}",
        "agent": agent,
        "session": session,
        "user": user,
        "team": team,
        "model": model,
        "input_tokens": str(i),
        "output_tokens": str(o),
        "tool_calls": "1",
        "duration_s": "2.5",
        "outcome": "done",
    }


@pytest.fixture
def usage_url(redis_factory: Any) -> str:
    service = redis_factory(appendonly=False)
    client = redis.Redis.from_url(service.url, decode_responses=True)
    old_ms = int((time.time() - 2 * 3600) * 1000)
    old = record("researcher s0 alice search", QWEN, 10**6, 0)
    client.xadd("swarm:usage", old, id=f"{old_ms}-0")
    client.xadd("swarm:usage", record("researcher s1 alice search", QWEN, 1000, 400))
    client.xadd("swarm:usage", record("researcher s1 alice search", LLAMA, 600, 400))
    client.xadd("swarm:usage", record("concierge s2 bob support", QWEN, 2000, 1500))
    client.close()
    return service.url


def cost(url: str, *extra: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["cost", "--root", str(ROOT), "--redis-url", url, "--window", "1h", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_dollars_per_agent_session_user_and_team(
    usage_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rates = ["--tokens-per-second", f"{QWEN}=100", "--tokens-per-second", "llama31-8b=50"]
    code, out, err = cost(usage_url, *rates, "--json", capsys=capsys)
    assert code == 0, err
    report = json.loads(out)
    usd = {
        group: {k: v["usd"] for k, v in report[group].items()}
        for group in ("perAgent", "perSession", "perUser", "perTeam")
    }
    approx = pytest.approx
    assert usd["perAgent"] == {"concierge": approx(3500 * Q), "researcher": approx(3400 * Q)}
    assert usd["perSession"] == {"s1": approx(3400 * Q), "s2": approx(3500 * Q)}
    assert usd["perUser"] == {"alice": approx(0.0324888888889), "bob": approx(0.0334444444444)}
    assert usd["perTeam"] == {
        "search": approx(11_696 / 360_000),
        "support": approx(12_040 / 360_000),
    }
    assert report["total"]["usd"] == approx(0.0659333333333)
    assert report["total"]["turns"] == 3  # the two-hour-old record is outside the window
    qwen = report["models"][QWEN]
    assert qwen["usdPerHour"] == approx(3.44) and qwen["usdPerToken"] == approx(Q)
    assert qwen["replicasFrom"] == "models[].replicas.min of the stack"
    assert qwen["tokensPerSecondFrom"] == "--tokens-per-second"
    assert report["models"][LLAMA]["usdPerToken"] == approx(2 * Q)

    code, text, _ = cost(usage_url, *rates, capsys=capsys)
    assert code == 0
    assert "$ per user:" in text and "alice" in text and "total: $0.065933 for 3 turn(s)" in text
    assert "[--tokens-per-second]" in text  # which source priced the tokens


def test_replicas_scale_the_price(usage_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Two qwen replicas serving the same 100 tokens/s cost twice as much a token."""
    rates = ["--tokens-per-second", f"{QWEN}=100", "--tokens-per-second", f"{LLAMA}=50"]
    code, out, _ = cost(usage_url, *rates, "--replicas", "qwen25-7b=2", "--json", capsys=capsys)
    assert code == 0
    report = json.loads(out)
    assert report["perAgent"]["concierge"]["usd"] == pytest.approx(3500 * 2 * Q)
    assert report["models"][QWEN]["replicasFrom"] == "--replicas"


def test_missing_prices_are_clear_errors(
    usage_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cost(usage_url, capsys=capsys)
    assert code == 2 and "--tokens-per-second MODEL=N" in err
    code, _, err = cost(usage_url, "--tokens-per-second", f"{QWEN}=100", capsys=capsys)
    assert code == 2
    assert f"no tokens per second for model {LLAMA!r}" in err
    code, _, err = cost(usage_url, "--tokens-per-second", f"{QWEN}=-1", capsys=capsys)
    assert code == 2 and "must be above 0" in err


def test_a_model_outside_the_stack_is_priced_as_one_of_its_models(
    redis_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    service = redis_factory(appendonly=False)
    client = redis.Redis.from_url(service.url, decode_responses=True)
    client.xadd("swarm:usage", record("a s u t", "local/tiny", 700, 700))
    client.close()
    code, _, err = cost(service.url, "--tokens-per-second", "local/tiny=100", capsys=capsys)
    assert code == 2 and "'local/tiny' of the usage records is not a model of the stack" in err
    code, out, err = cost(
        service.url,
        "--tokens-per-second",
        "local/tiny=100",
        "--price-as",
        "local/tiny=qwen25-7b",
        "--json",
        capsys=capsys,
    )
    assert code == 0, err
    assert json.loads(out)["total"]["usd"] == pytest.approx(1400 * Q)
