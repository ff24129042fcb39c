"""The cluster launcher file and the container image: valid for Ray, pinned, lean to sync.

No cloud call: Ray's own schema validation and its defaults merge (what ``ray up`` does before
it talks to AWS), and the pins checked against the Ray that this suite runs.
"""

from __future__ import annotations

import copy
import os
import re
from importlib import metadata
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from data_prep.versions import PREPARATION_PACKAGES, TRAINING_PACKAGES
from tests.kuberay_schema import schema_from_crd, vendored_schema

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "deploy" / "constraints.txt"


def pins() -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in CONSTRAINTS.read_text().splitlines())
    return dict(line.split("==") for line in lines if line)


@pytest.fixture(scope="module")
def cluster_config() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_own_validation(cluster_config):
    prepared = prepare_config(copy.deepcopy(cluster_config))  # as `ray up` does, before AWS
    validate_config(prepared)
    assert set(prepared["available_node_types"]) == {"head", "gpu_worker"}


def test_ray_validation_catches_a_broken_file(cluster_config):
    """The check above can fail: a misspelt key is refused by the same validation."""
    broken = copy.deepcopy(cluster_config)
    broken["available_node_types"]["gpu_worker"]["min_worker"] = 0
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        validate_config(prepare_config(broken))


def test_every_node_runs_the_pinned_ray_that_this_suite_tests(cluster_config):
    assert pins()["ray"] == ray.__version__
    image = cluster_config["docker"]["image"]
    assert re.fullmatch(rf"rayproject/ray:{re.escape(ray.__version__)}-py3\d+-gpu", image)
    setup = " ".join(cluster_config["setup_commands"])
    assert "-c /home/ray/sffb-distill/deploy/constraints.txt" in setup
    assert {"torch", "torchvision"} <= set(pins())


def test_constraints_pin_every_package_that_shapes_the_numbers_at_its_installed_version():
    """README, CI, the cluster and the image install with these pins, so the figures repeat."""
    shaping = (set(TRAINING_PACKAGES) | set(PREPARATION_PACKAGES)) - {"sffb-distill"}
    assert set(pins()) == shaping
    installed = {package: metadata.version(package) for package in shaping}
    assert pins() == installed, "deploy/constraints.txt differs from this install"


def test_cluster_yaml_syncs_code_only_and_shares_storage_by_uri(cluster_config):
    assert {".git", ".venv", "outputs"} <= set(cluster_config["rsync_exclude"])
    commands = " ".join(cluster_config["setup_commands"] + cluster_config["head_setup_commands"])
    assert re.search(r"SFFB_HOME=s3://", commands)
    assert "--artifacts-destination s3://" in commands
    assert "MLFLOW_TRACKING_URI=http://" in commands
    for node_type in cluster_config["available_node_types"].values():
        assert "IamInstanceProfile" in node_type["node_config"]


def test_paper_preset_asks_for_gpus_explicitly():
    preset = yaml.safe_load((ROOT / "rayjobs" / "presets" / "paper.yaml").read_text())
    assert preset["scaling"]["use_gpu"] == "yes"


@pytest.fixture(scope="module")
def rayjob() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "rayjob.yaml").read_text())


def _pod_templates(rayjob: dict) -> list[dict]:
    cluster = rayjob["spec"]["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [group["template"] for group in groups]


def test_rayjob_pod_templates_are_valid_kubernetes(rayjob):
    """Each group's pod template, as a Kubernetes PodTemplate, against Kubernetes' own schema."""
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    for template in _pod_templates(rayjob):
        resource = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}}
        kubernetes_validate.validate({**resource, "template": template}, version, strict=True)
    broken = copy.deepcopy(_pod_templates(rayjob)[0])
    broken["spec"]["containers"][0]["imagePullPolicy"] = ["Always"]
    with pytest.raises(kubernetes_validate.ValidationError):
        resource = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}}
        kubernetes_validate.validate({**resource, "template": broken}, version, strict=True)


def test_rayjob_runs_the_paper_preset_on_gpu_workers_with_uris(rayjob):
    spec = rayjob["spec"]
    assert (rayjob["apiVersion"], rayjob["kind"]) == ("ray.io/v1", "RayJob")
    assert spec["rayClusterSpec"]["rayVersion"] == pins()["ray"]
    assert spec["entrypoint"].startswith("python rayjobs/distill.py --preset paper")
    env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    assert env["SFFB_HOME"].startswith("s3://")
    assert env["MLFLOW_TRACKING_URI"].startswith("http://")
    workers = spec["rayClusterSpec"]["workerGroupSpecs"]
    assert all(
        c["resources"]["limits"]["nvidia.com/gpu"] == "1"
        for group in workers
        for c in group["template"]["spec"]["containers"]
    )
    images = {c["image"] for t in _pod_templates(rayjob) for c in t["spec"]["containers"]}
    assert len(images) == 1  # head and workers run the same image


def test_rayjob_matches_kuberays_rayjob_schema(rayjob):
    """Against KubeRay's RayJob schema: the vendored one, or ``KUBERAY_RAYJOB_CRD``'s.

    Set ``KUBERAY_RAYJOB_CRD`` to the ``ray.io_rayjobs.yaml`` of the operator you deploy to
    check against that version instead.
    """
    crd_path = os.environ.get("KUBERAY_RAYJOB_CRD")
    schema = schema_from_crd(Path(crd_path)) if crd_path else vendored_schema()
    assert schema["properties"]["kind"]["type"] == "string"  # a schema, not an empty file
    jsonschema.validate(rayjob, schema)
    broken = copy.deepcopy(rayjob)
    broken["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_dockerfile_builds_from_the_pinned_ray_image_and_copies_only_existing_code():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(rf"^FROM rayproject/ray:{re.escape(pins()['ray'])}-py3\d+-gpu$", text, re.M)
    assert "-c deploy/constraints.txt" in text
    for line in re.findall(r"^COPY (?:--\S+ )*(.+)$", text, re.M):
        *sources, _ = line.split()
        for source in sources:
            assert (ROOT / source).exists(), source
        assert not {".git", ".venv", "outputs", "."} & set(sources)
