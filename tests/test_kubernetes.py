"""``--cluster kubernetes`` and ``deploy/kubernetes/`` without a Kubernetes node: the resources
validate against the DaskCluster/DaskJob schemas that the dask-kubernetes wheel ships and
against Kubernetes' own schemas (``kubernetes-validate``), and broken ones are rejected.
``KubeCluster`` itself is never called here (it would wait forever for a scheduler pod)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import dask
import pytest

from ballot_dask.deploy.kubernetes import DEFAULT_IMAGE, cluster_spec, parse_env

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")
kubernetes_validate = pytest.importorskip("kubernetes_validate")
pytest.importorskip("dask_kubernetes")

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30"


@functools.cache
def crd_schema(kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of a dask-kubernetes CRD, as its Helm chart ships it (resolved)."""
    import dask_kubernetes

    crds = (
        Path(dask_kubernetes.__file__).parent
        / "operator/deployment/helm/dask-kubernetes-operator/crds"
    )
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((crds / f"{kind.lower()}.yaml").read_text(), Loader=loader)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def cluster_of(resource: dict[str, Any]) -> dict[str, Any]:
    """The DaskCluster spec of a DaskCluster or a DaskJob."""
    if resource["kind"] == "DaskCluster":
        return resource["spec"]
    return resource["spec"]["cluster"]["spec"]


def pod(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": spec}


def pod_specs(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs inside a DaskCluster or DaskJob."""
    cluster = cluster_of(resource)
    specs = [cluster["worker"]["spec"], cluster["scheduler"]["spec"]]
    if resource["kind"] == "DaskJob":
        specs.append(resource["spec"]["job"]["spec"])
    return specs


def validate(resource: dict[str, Any]) -> None:
    """Raise when ``resource`` breaks its CRD's schema or Kubernetes' Pod/Service schemas."""
    jsonschema.validate(resource, crd_schema(resource["kind"]))
    for spec in pod_specs(resource):
        kubernetes_validate.validate(pod(spec), KUBERNETES_VERSION, strict=True)
    cluster = cluster_of(resource)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
               "spec": cluster["scheduler"]["service"]}  # fmt: skip
    kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)


def manifests() -> dict[str, dict[str, Any]]:
    found = {p.name: yaml.safe_load(p.read_text()) for p in sorted(MANIFESTS.glob("*.yaml"))}
    assert set(found) == {"daskcluster.yaml", "daskcluster-tls.yaml", "daskjob.yaml"}
    return found


# --------------------------------------------------------------------------------------------
# the spec --cluster kubernetes submits
# --------------------------------------------------------------------------------------------


def test_the_spec_from_the_options_validates_and_holds_them():
    spec = cluster_spec(
        n_workers=3, cores=2, memory="4GiB", env={"AWS_ENDPOINT_URL": "http://s3:9000"}
    )
    validate(spec)
    worker = spec["spec"]["worker"]
    assert worker["replicas"] == 3
    (container,) = worker["spec"]["containers"]
    assert container["image"] == DEFAULT_IMAGE == "ballot-dask:0.1.0"
    assert container["args"][:6] == ["dask", "worker", "--nthreads", "2", "--memory-limit",
                                     str(4 * 2**30)]  # fmt: skip
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": str(4 * 2**30)},
        "limits": {"cpu": "2", "memory": str(4 * 2**30)},
    }
    assert container["env"] == [{"name": "AWS_ENDPOINT_URL", "value": "http://s3:9000"}]
    (scheduler,) = spec["spec"]["scheduler"]["spec"]["containers"]
    assert scheduler["args"] == ["dask", "scheduler", "--host", "0.0.0.0"]
    name = spec["metadata"]["name"]
    assert spec["spec"]["scheduler"]["service"]["selector"]["dask.org/cluster-name"] == name


def test_the_spec_takes_dask_kubernetes_settings_and_the_options_win():
    settings = {
        "kubernetes.image": "registry.example/ballot-dask:0.1.0",
        "kubernetes.count.start": 5,
        "kubernetes.name": "fit-{user}",
        "kubernetes.env": {"A": "1", "B": "2"},
        "kubernetes.resources": {"requests": {"ephemeral-storage": "1Gi"}},
        "kubernetes.worker-command": "dask worker --nworkers 1",
    }
    with dask.config.set(settings):
        spec = cluster_spec()
        override = cluster_spec(image="mine:1", n_workers=2, env={"B": "3"}, memory="1GB")
    validate(spec)
    validate(override)
    (worker,) = spec["spec"]["worker"]["spec"]["containers"]
    assert worker["image"] == "registry.example/ballot-dask:0.1.0"
    assert spec["spec"]["worker"]["replicas"] == 5
    assert spec["metadata"]["name"].startswith("fit-")
    assert worker["args"][:4] == ["dask", "worker", "--nworkers", "1"]
    assert worker["resources"] == {"requests": {"ephemeral-storage": "1Gi"}}
    (worker,) = override["spec"]["worker"]["spec"]["containers"]
    assert worker["image"] == "mine:1" and override["spec"]["worker"]["replicas"] == 2
    assert worker["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}]
    assert worker["resources"]["requests"] == {"ephemeral-storage": "1Gi", "memory": "1000000000"}


def test_the_spec_needs_a_worker_count_and_clear_env_pairs():
    with pytest.raises(ValueError, match="--n-workers"):
        cluster_spec()
    with pytest.raises(ValueError, match="--env must be NAME=VALUE, got 'A'"):
        parse_env(["A"])
    with pytest.raises(ValueError, match="--memory must be a size"):
        cluster_spec(n_workers=1, memory="lots")
    assert parse_env(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}


# --------------------------------------------------------------------------------------------
# deploy/kubernetes/
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["daskcluster.yaml", "daskcluster-tls.yaml", "daskjob.yaml"])
def test_the_manifests_validate(name):
    validate(manifests()[name])


def test_the_manifests_run_this_package():
    found = manifests()
    job = found["daskjob.yaml"]
    (runner,) = job["spec"]["job"]["spec"]["containers"]
    assert runner["args"][:2] == ["ballot-dask", "fit"]
    assert runner["args"][runner["args"].index("--scheduler") + 1] == "$(DASK_SCHEDULER_ADDRESS)"
    for name, resource in found.items():
        name_of_cluster = resource["metadata"]["name"]
        cluster = cluster_of(resource)
        selector = cluster["scheduler"]["service"]["selector"]
        assert selector["dask.org/cluster-name"] == name_of_cluster, name
        for spec in pod_specs(resource):
            assert spec["securityContext"]["runAsNonRoot"] is True
            for container in spec["containers"]:
                assert container["image"] == DEFAULT_IMAGE, name
                assert container["args"][0] in ("dask", "ballot-dask")
                assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    tls = found["daskcluster-tls.yaml"]
    (worker,) = tls["spec"]["worker"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in worker["env"]}
    assert env["DASK_SCHEDULER_ADDRESS"] == "tls://ballot-tls-scheduler:8786"
    assert env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "true"


BREAKAGES = {
    "replicas as text": (
        lambda r: r["spec"]["worker"].__setitem__("replicas", "two"),
        jsonschema.ValidationError,
    ),
    "no scheduler": (lambda r: r["spec"].pop("scheduler"), jsonschema.ValidationError),
    "unknown container field": (
        lambda r: r["spec"]["worker"]["spec"]["containers"][0].__setitem__("imagePolicy", "x"),
        kubernetes_validate.ValidationError,
    ),
    "port as text": (
        lambda r: r["spec"]["scheduler"]["spec"]["containers"][0]["ports"][0].__setitem__(
            "containerPort", "8786"
        ),
        (jsonschema.ValidationError, kubernetes_validate.ValidationError),
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_broken_manifest_is_rejected(breakage):
    resource = copy.deepcopy(manifests()["daskcluster.yaml"])
    validate(resource)
    change, error = BREAKAGES[breakage]
    change(resource)
    with pytest.raises(error):
        validate(resource)
