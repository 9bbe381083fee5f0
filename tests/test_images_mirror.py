"""`images.mirror`: every image a stack runs comes from the account's ECR mirror, pinned by
the digest ECR answers (in the plan, the planned digest of `stacks/plan/recorder.py`), and an
image missing from the mirror stops the program naming the image and the copy command."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, cast

import pytest

from policies.rules.supply_chain import RULES
from stacks.cli import main as cli
from stacks.config import ConfigError, ImageMirror, load
from stacks.images import MirroredImage, image_slots, mirror_plan, pin_images
from stacks.plan.policy import evaluate
from stacks.plan.recorder import ACCOUNT_ID, Capture
from stacks.plan.runner import read_program_input, run_program

ROOT = Path(__file__).resolve().parent.parent
Raw = dict[str, Any]
REGISTRY = f"{ACCOUNT_ID}.dkr.ecr.us-east-1.amazonaws.com"
MIRROR = f"{REGISTRY}/mirror"


def _with_mirror(pilot_raw: Raw) -> Raw:
    raw = copy.deepcopy(pilot_raw)
    raw["images"]["mirror"] = {"prefix": "mirror"}
    return raw


def _pod_images(node: Any) -> list[str]:
    """Every container's image anywhere in an object (pod templates, job templates, ...)."""
    found: list[str] = []
    if isinstance(node, dict):
        mapping = cast(dict[str, Any], node)
        if isinstance(mapping.get("image"), str) and "name" in mapping:
            found.append(mapping["image"])
        for value in mapping.values():
            found += _pod_images(value)
    elif isinstance(node, list):
        for item in cast(list[Any], node):
            found += _pod_images(item)
    return found


@pytest.fixture(scope="module")
def mirrored_plan() -> Capture:
    inp = read_program_input(ROOT, "pilot")
    images = json.loads(inp.config["swarmstack:images"])
    images["mirror"] = {"prefix": "mirror"}
    inp.config["swarmstack:images"] = json.dumps(images)
    return run_program(inp)


def _rendered_images(capture: Capture) -> dict[str, list[str]]:
    return {
        r.name: _pod_images(r.inputs)
        for r in capture.registrations
        if r.type.startswith("kubernetes:") and not r.type.startswith("kubernetes:helm.sh/")
        if _pod_images(r.inputs)
    }


def test_every_rendered_image_runs_from_the_mirror_by_digest(mirrored_plan: Capture) -> None:
    """Fails when a component renders an image the mirror walker does not see (a bare
    string, or a field outside the config)."""
    rendered = _rendered_images(mirrored_plan)
    assert len(rendered) >= 10  # models, agents, stores, gateway and its jobs, collector
    outside = {
        name: image
        for name, images in rendered.items()
        for image in images
        if not (image.startswith(f"{MIRROR}/") or image.startswith(f"{REGISTRY}/swarm-pilot/"))
        or "@sha256:" not in image
    }
    assert outside == {}
    assert [
        str(v) for v in evaluate(mirrored_plan.registrations, {}, RULES) if "digest" in str(v)
    ] == []


def test_the_plan_pins_the_planned_digest_of_repository_and_tag(mirrored_plan: Capture) -> None:
    rendered = _rendered_images(mirrored_plan)
    expected = hashlib.sha256(b"mirror/docker.io/vllm/vllm-openai:v0.32.0").hexdigest()
    assert rendered["model-qwen25-7b-deployment"] == [
        f"{MIRROR}/docker.io/vllm/vllm-openai:v0.32.0@sha256:{expected}"
    ]
    worker = hashlib.sha256(b"swarm-pilot/agent-worker:0.1.0").hexdigest()
    assert (
        f"{REGISTRY}/swarm-pilot/agent-worker:0.1.0@sha256:{worker}"
        in (rendered["agent-concierge-deployment"])
    )


def test_the_walker_lists_each_image_by_its_config_path(pilot_raw: Raw) -> None:
    config = load(_with_mirror(pilot_raw), "us-east-1", "x")
    slots = {s.path: s.image.reference for s in image_slots(config)}
    assert slots == {
        "images.vllm": "docker.io/vllm/vllm-openai:v0.32.0",
        "images.agentWorker": f"{REGISTRY}/swarm-pilot/agent-worker:0.1.0",
        "dataPlane.redis.image": "docker.io/valkey/valkey:8.1.10",
        "dataPlane.redis.exporterImage": "docker.io/oliver006/redis_exporter:v1.88.0",
        "dataPlane.qdrant.image": "docker.io/qdrant/qdrant:v1.19.0-unprivileged",
        "dataPlane.qdrant.snapshots.image": "docker.io/amazon/aws-cli:2.37.5",
        "observability.tracing.image": "docker.io/otel/opentelemetry-collector:0.159.0",
        "gateway.image": "ghcr.io/berriai/litellm-non_root:v1.110.2",
        "gateway.database.image": "docker.io/library/postgres:17.6",
        "gateway.database.exporterImage": "quay.io/prometheuscommunity/postgres-exporter:v0.17.1",
    }


def test_managed_stores_bring_no_images(pilot_raw: Raw) -> None:
    raw = _with_mirror(pilot_raw)
    raw["gateway"]["database"] = {"mode": "rds"}
    raw["dataPlane"]["redis"] = {"mode": "elasticache", "version": "8.1"}
    paths = [s.path for s in image_slots(load(raw, "us-east-1", "x"))]
    assert not [p for p in paths if p.startswith(("dataPlane.redis", "gateway.database"))]


def _missing(image: MirroredImage) -> str:
    if "valkey" in image.repository_name:
        raise Exception(  # what the SDK raises for a failed invoke
            "invoke of aws:ecr/getImage:getImage failed: reading ECR Image: "
            "ImageNotFoundException: The image with imageId {imageTag:'8.1.10'} does not "
            "exist within the repository\nmore detail"
        )
    return "sha256:" + "a" * 64


def test_an_image_missing_from_the_mirror_names_it_and_the_copy(pilot_raw: Raw) -> None:
    config = load(_with_mirror(pilot_raw), "us-east-1", "x")
    with pytest.raises(ConfigError) as info:
        pin_images(
            config,
            account="123456789012",
            region="us-east-1",
            stack="pilot",
            source="stacks/Pulumi.pilot.yaml",
            lookup=_missing,
        )
    text = str(info.value)
    mirror = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mirror/docker.io/valkey/valkey:8.1.10"
    assert (
        "dataPlane.redis.image: docker.io/valkey/valkey:8.1.10 is not in the mirror: ECR has no "
        f"{mirror} (invoke of aws:ecr/getImage:getImage failed: reading ECR Image: "
        "ImageNotFoundException: The image with imageId {imageTag:'8.1.10'} does not exist "
        "within the repository); "
        f"crane copy docker.io/valkey/valkey:8.1.10 {mirror} "
        "(`swarmstack images pilot` lists every copy)"
    ) in text
    assert text.count("is not in the mirror") == 1
    assert "more detail" not in text


def test_a_pinned_upstream_digest_must_match_the_mirror(pilot_raw: Raw) -> None:
    raw = _with_mirror(pilot_raw)
    raw["images"]["vllm"]["digest"] = "sha256:" + "b" * 64
    config = load(raw, "us-east-1", "x")
    with pytest.raises(ConfigError) as info:
        pin_images(
            config, account="123456789012", region="us-east-1", stack="p", source="x",
            lookup=lambda _i: "sha256:" + "a" * 64,
        )  # fmt: skip
    assert f"but the config pins sha256:{'b' * 64}: copy the pinned image again" in str(info.value)


def test_pinning_rewrites_every_slot_and_keeps_the_rest(pilot_raw: Raw) -> None:
    config = load(_with_mirror(pilot_raw), "us-east-1", "x")
    digest = "sha256:" + "c" * 64
    pinned = pin_images(
        config, account=ACCOUNT_ID, region="us-east-1", stack="p", source="x",
        lookup=lambda _i: digest,
    )  # fmt: skip
    assert all(s.image.digest == digest for s in image_slots(pinned))
    assert pinned.gateway is not None and config.gateway is not None
    assert pinned.gateway.image.repository == f"{MIRROR}/ghcr.io/berriai/litellm-non_root"
    assert pinned.gateway.keys == config.gateway.keys
    assert pinned.models == config.models
    assert config.images.vllm.digest is None  # the input is left as it was


def test_mirror_prefix_must_be_an_ecr_repository_name() -> None:
    with pytest.raises(ValueError, match="String should match pattern"):
        ImageMirror.model_validate({"prefix": "Mirror/"})


def test_images_cli_lists_upstream_and_mirror(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "stacks").mkdir()
    text = (ROOT / "stacks" / "Pulumi.pilot.yaml").read_text()
    assert cli(["images", "pilot", "--root", str(ROOT)]) == 2
    assert "images.mirror is not set" in capsys.readouterr().err
    text = text.replace(
        "  swarmstack:images:\n", "  swarmstack:images:\n    mirror:\n      prefix: m\n"
    )
    (tmp_path / "stacks" / "Pulumi.s.yaml").write_text(text)
    assert cli(["images", "s", "--root", str(tmp_path), "--account", "123456789012"]) == 0
    out = capsys.readouterr().out
    vllm = next(line for line in out.splitlines() if line.startswith("images.vllm "))
    assert vllm.split() == [
        "images.vllm",
        "docker.io/vllm/vllm-openai:v0.32.0",
        "->",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/m/docker.io/vllm/vllm-openai:v0.32.0",
    ]
    assert "swarm-pilot/agent-worker:0.1.0 (already in ECR)" in out
    assert cli(["images", "s", "--root", str(tmp_path), "--format", "tsv"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [
        "ghcr.io/berriai/litellm-non_root:v1.110.2",
        "<account>.dkr.ecr.us-east-1.amazonaws.com/m/ghcr.io/berriai/litellm-non_root:v1.110.2",
        "m/ghcr.io/berriai/litellm-non_root",
    ] in rows
    assert len(rows) == 9  # each distinct upstream once; the agent worker is not copied


def test_mirror_plan_keeps_an_ecr_image_in_its_registry(pilot_raw: Raw) -> None:
    config = load(_with_mirror(pilot_raw), "us-east-1", "x")
    assert config.images.mirror is not None
    worker = next(
        m
        for m in mirror_plan(config, config.images.mirror, "999999999999", "eu-west-1")
        if m.path == "images.agentWorker"
    )
    assert (worker.registry_id, worker.region, worker.repository_name, worker.copy) == (
        ACCOUNT_ID,
        "us-east-1",
        "swarm-pilot/agent-worker",
        False,
    )


def test_an_ecr_image_that_is_missing_says_to_push_it(pilot_raw: Raw) -> None:
    config = load(_with_mirror(pilot_raw), "us-east-1", "x")

    def nothing(_image: MirroredImage) -> str:
        raise Exception("invoke of aws:ecr/getImage:getImage failed: RepositoryNotFoundException")

    with pytest.raises(ConfigError) as info:
        pin_images(
            config, account=ACCOUNT_ID, region="us-east-1", stack="pilot", source="x",
            lookup=nothing,
        )  # fmt: skip
    text = str(info.value)
    assert text.count("is not in the mirror") == len(image_slots(config)) - 1 == 9
    assert (
        f"images.agentWorker: ECR has no {REGISTRY}/swarm-pilot/agent-worker:0.1.0 (invoke of "
        "aws:ecr/getImage:getImage failed: RepositoryNotFoundException); build and push "
        f"{REGISTRY}/swarm-pilot/agent-worker:0.1.0 (README, Agent worker)"
    ) in text
