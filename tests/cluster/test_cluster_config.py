"""cluster.yaml passes Ray's own schema after `prepare_config` (as `ray up` does) and says what a
cluster needs: shared storage on every node, a token made on the head, the dashboard on 127.0.0.1;
k8s/rayjob.yaml has the fields KubeRay's RayJob CRD requires."""
from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml

from harp.cluster.resources import autoscaler_node_types

from .conftest import REPO


def _cluster() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_schema_as_ray_up_prepares_it():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(_cluster()))
    validate_config(config)  # raises on any schema violation
    assert config["head_node_type"] == "head"
    assert set(config["available_node_types"]) == {"head", "gpu_worker"}
    misspelt = _cluster()
    misspelt["setup_comands"] = misspelt.pop("setup_commands")
    with pytest.raises(jsonschema.ValidationError, match="setup_comands"):  # the schema is really applied
        validate_config(prepare_config(misspelt))


def test_every_node_mounts_the_shared_file_system_and_installs_the_same_tree():
    config = _cluster()
    setup = "\n".join(config["setup_commands"])  # setup_commands run on the head and every worker
    assert "mount -t nfs4" in setup and " /shared" in setup
    assert "scripts/bootstrap.sh" in setup and "git rev-parse HEAD" in setup
    assert config["file_mounts"] == {"/home/ubuntu/harp": "."}
    assert ".git" not in config["rsync_exclude"]  # the commit travels with the tree


def test_the_token_is_made_on_the_head_and_auth_is_on_everywhere():
    config = _cluster()
    head_setup = "\n".join(config["head_setup_commands"])
    assert "ray get-auth-token --generate" in head_setup and "chmod 600" in head_setup
    assert "install -m 600" in head_setup  # handed to the workers through /shared, mode 600
    head_start = "\n".join(config["head_start_ray_commands"])
    worker_start = "\n".join(config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head_start and "RAY_AUTH_MODE=token" in worker_start
    assert "RAY_AUTH_TOKEN_PATH=/shared/.ray-token/auth_token" in worker_start
    assert "--dashboard-host=127.0.0.1" in head_start  # reached through `ray dashboard cluster.yaml` only
    for text in (head_start, worker_start):
        assert "WANDB_API_KEY=\"$(aws secretsmanager" in text  # from a secret store, never a literal


def test_declared_node_types_let_a_sweep_check_what_the_autoscaler_can_add(tmp_path):
    from ray.autoscaler._private.util import prepare_config

    bootstrap = tmp_path / "ray_bootstrap_config.yaml"
    bootstrap.write_text(yaml.safe_dump(prepare_config(copy.deepcopy(_cluster()))))
    assert {"CPU": 48.0, "GPU": 4.0} in autoscaler_node_types(bootstrap)


def test_rayjob_manifest_has_what_kuberays_crd_requires():
    docs = list(yaml.safe_load_all((REPO / "k8s" / "rayjob.yaml").read_text()))
    job = next(d for d in docs if d["kind"] == "RayJob")
    assert job["apiVersion"] == "ray.io/v1" and job["metadata"]["name"]
    spec = job["spec"]
    assert spec["entrypoint"].startswith("harp sweep --space ") and "--resume-if-exists" in spec["entrypoint"]
    assert "sweep.output_dir=/shared/runs" in spec["entrypoint"] and "sweep.name=" in spec["entrypoint"]
    assert isinstance(spec["backoffLimit"], int) and spec["backoffLimit"] >= 1
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict) and all(isinstance(v, str) for v in head["rayStartParams"].values())
    groups = cluster["workerGroupSpecs"]
    assert groups and all(g["groupName"] and "template" in g for g in groups)
    pods = [head["template"], *(g["template"] for g in groups), spec["submitterPodTemplate"]]
    images = set()
    for pod in pods:
        for container in pod["spec"]["containers"]:
            assert container["name"] and container["image"]
            images.add(container["image"])
            env = {e["name"]: e for e in container.get("env", [])}
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"] and "value" not in env["RAY_AUTH_TOKEN"]
            for entry in env.values():  # every secret from a Secret, never a literal
                if entry["name"].endswith(("KEY", "TOKEN", "PASSWORD")):
                    assert "valueFrom" in entry and "value" not in entry, entry
            for mount in container.get("volumeMounts", []):
                assert mount["name"] and mount["mountPath"]
    assert len(images) == 1  # every pod runs the same commit
    for pod in pods[:-1]:
        mounts = {m["mountPath"] for c in pod["spec"]["containers"] for m in c.get("volumeMounts", [])}
        assert "/shared" in mounts
    claim = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
