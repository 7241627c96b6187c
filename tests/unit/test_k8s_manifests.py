"""Kubernetes manifests with KEDA: generated from the topology and the scale limits, checked offline
against Kubernetes' own schemas (kubernetes-validate) and a minimal ScaledObject schema written from
KEDA's documented CRD (tests/support/schemas/), since no cluster and no KEDA run here."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from config.app import create_app
from config.settings import load_settings
from tests.support.worker import ROOT
from workers.ops.cli.scale_manifests import manifests
from workers.ops.metrics import METRICS
from workers.scaling.kubernetes import BACKLOG_METRIC, ManifestOptions, QueueScaling, manifest_files
from workers.scaling.limits import ScaleLimits
from workers.scaling.yaml_text import documents

#: The committed example manifests (make k8s-manifests).
K8S = ROOT / "compose" / "k8s"
#: The settings the committed examples come from: the defaults and the seed's subscriptions.
EXAMPLE_ENV = {"PLATFORM_SUBSCRIPTIONS_FILE": "config/subscriptions.toml"}
#: The Kubernetes version the objects are checked against (autoscaling/v2 behavior is GA from 1.23).
KUBERNETES_VERSION = "1.30.0"
KEDA_SCHEMA = json.loads((ROOT / "tests/support/schemas/keda-scaledobject-v1alpha1.json").read_text())
#: Metadata keys of KEDA's prometheus trigger (keda.sh docs, scalers/prometheus, 2.13-2.16).
PROMETHEUS_KEYS = {
    "serverAddress",
    "query",
    "queryParameters",
    "threshold",
    "activationThreshold",
    "namespace",
    "customHeaders",
    "ignoreNullValues",
    "unsafeSsl",
    "timeout",
}


def generate(env: dict[str, str], *args: str) -> Any:
    """Run the CLI command as ``celery -A config scale manifests`` would, on an app built from ``env``."""
    app = create_app(load_settings(env))
    return CliRunner().invoke(manifests, list(args), obj=SimpleNamespace(app=app))


def objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module")
def example() -> list[dict[str, Any]]:
    result = generate(EXAMPLE_ENV)
    assert result.exit_code == 0, result.output
    return objects(result.output)


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def hpa_keda_would_create(scaled: dict[str, Any]) -> dict[str, Any]:
    """The HorizontalPodAutoscaler KEDA makes of a ScaledObject (its min is at least 1: KEDA
    itself scales between 0 and 1), so its behavior is checked by Kubernetes' own schema."""
    spec = scaled["spec"]
    trigger = spec["triggers"][0]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": f"keda-hpa-{scaled['metadata']['name']}"},
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": spec["scaleTargetRef"]["name"],
            },
            "minReplicas": max(spec["minReplicaCount"], 1),
            "maxReplicas": spec["maxReplicaCount"],
            "behavior": spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"],
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {"name": "s0-prometheus"},
                        "target": {
                            "type": trigger["metricType"],
                            "averageValue": trigger["metadata"]["threshold"],
                        },
                    },
                }
            ],
        },
    }


def test_the_committed_manifests_are_what_make_k8s_manifests_writes_now(tmp_path: Path) -> None:
    """Given the example settings, when the manifests are written to a folder, then every file
    equals the one committed under compose/k8s/ and no committed file is left over."""
    result = generate(EXAMPLE_ENV, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    fresh = {path.name: path.read_text() for path in tmp_path.iterdir()}
    committed = {path.name: path.read_text() for path in K8S.glob("*.yaml")}
    assert sorted(committed) == sorted(fresh), "run: make k8s-manifests"
    for name, text in fresh.items():
        assert committed[name] == text, f"compose/k8s/{name} is stale; run: make k8s-manifests"


def test_every_queue_gets_a_worker_deployment_and_a_scaled_object_and_the_exporter_a_service(example) -> None:
    """Work queues, the default queue and the seed's subscriber queues each have workers of their
    own, scaled by KEDA; the exporter is one Deployment and a Service Prometheus scrapes."""
    topology = create_app(load_settings(EXAMPLE_ENV)).conf["platform"].topology
    expected = {"worker-" + name.replace(".", "-") for name in topology.names}
    assert "worker-email-events" in expected
    deployments = by_kind(example, "Deployment")
    assert set(deployments) == expected | {"metrics"}
    assert set(by_kind(example, "ScaledObject")) == expected
    service = by_kind(example, "Service")["metrics"]
    assert service["spec"]["selector"] == deployments["metrics"]["spec"]["selector"]["matchLabels"]
    assert service["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert service["spec"]["ports"][0]["port"] == 9808


def test_every_core_object_validates_against_the_kubernetes_schema_strictly(example) -> None:
    """Deployments, the Service and the ConfigMap pass Kubernetes 1.30's OpenAPI schema with
    unknown fields refused; so does the HPA KEDA would make of each ScaledObject."""
    checked = 0
    for doc in example:
        if doc["kind"] == "ScaledObject":
            doc = hpa_keda_would_create(doc)
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked == len(example) >= 20


def test_a_schema_check_can_fail() -> None:
    """A misspelt field is refused by each schema the other tests rely on."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replica": 1},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    scaled = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {"scaleTargetRef": {"name": "x"}, "triggers": [], "cooldownPeriods": 1},
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, KEDA_SCHEMA)


def test_every_scaled_object_matches_kedas_documented_crd_and_prometheus_trigger(example) -> None:
    """Each ScaledObject passes the KEDA schema; its one trigger is prometheus with only
    documented metadata keys, every value a string (the CRD's metadata is map[string]string)."""
    for name, scaled in by_kind(example, "ScaledObject").items():
        jsonschema.validate(scaled, KEDA_SCHEMA)
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["type"] == "prometheus"
        assert set(trigger["metadata"]) <= PROMETHEUS_KEYS, name
        assert scaled["spec"]["scaleTargetRef"]["name"] == name


def test_keda_reads_the_due_backlog_of_its_own_queue_and_holds_when_the_metric_is_lost(example) -> None:
    """The query asks the exporter's due-backlog series for that queue only (ready + unacked,
    not the ready count of KEDA's RabbitMQ scaler); an empty answer is an error, not 0."""
    assert BACKLOG_METRIC in METRICS
    scaled = by_kind(example, "ScaledObject")
    query = scaled["worker-email-events"]["spec"]["triggers"][0]["metadata"]["query"]
    assert query == 'max(platform_queue_due_backlog{queue="email.events"})'
    for doc in scaled.values():
        metadata = doc["spec"]["triggers"][0]["metadata"]
        assert metadata["ignoreNullValues"] == "false"
        assert metadata["activationThreshold"] == "0"
        assert "rabbitmq" not in json.dumps(doc)


def test_the_scale_limits_become_keda_and_hpa_fields_per_queue() -> None:
    """Given orders:min=0,max=20,up_above=500,step_up=4,step_down=2,cooldown=30,window=120,
    then orders' ScaledObject says min 0, max 20, one worker per 500 due, +4 / -2 pods per 30 s,
    a 120 s down window and 120 s before the last worker goes; other queues keep the defaults."""
    env = {
        **EXAMPLE_ENV,
        "PLATFORM_SCALE_QUEUES": "orders:min=0,max=20,up_above=500,down_below=50,step_up=4,step_down=2,cooldown=30,window=120",
    }
    result = generate(env)
    assert result.exit_code == 0, result.output
    scaled = by_kind(objects(result.output), "ScaledObject")
    orders = scaled["worker-orders"]["spec"]
    behavior = orders["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert (orders["minReplicaCount"], orders["maxReplicaCount"], orders["cooldownPeriod"]) == (0, 20, 120)
    assert orders["triggers"][0]["metadata"]["threshold"] == "500"
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleUp"]["policies"] == [{"type": "Pods", "value": 4, "periodSeconds": 30}]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 120
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 2, "periodSeconds": 30}]
    payments = scaled["worker-payments"]["spec"]
    assert (payments["minReplicaCount"], payments["maxReplicaCount"]) == (1, 8)
    assert payments["triggers"][0]["metadata"]["threshold"] == "1000"
    kubernetes_validate.validate(
        hpa_keda_would_create(scaled["worker-orders"]), KUBERNETES_VERSION, strict=True
    )


def test_a_worker_stops_with_a_warm_shutdown_within_the_grace_period(example) -> None:
    """The pod's command is the start script, which execs celery (so SIGTERM reaches Celery:
    a warm shutdown); the grace period is the option's, with no preStop hook delaying it; the
    Deployment leaves replicas to KEDA and consumes its own queue only."""
    result = generate(EXAMPLE_ENV, "--grace-seconds", "900")
    deployment = by_kind(objects(result.output), "Deployment")["worker-orders"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["terminationGracePeriodSeconds"] == 900
    assert "lifecycle" not in container
    assert "replicas" not in deployment["spec"]
    script = (ROOT / container["command"][0]).read_text()
    assert re.search(r"^exec celery -A config worker ", script, re.MULTILINE)
    assert {"name": "WORKER_QUEUES", "value": "orders"} in container["env"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    default = by_kind(example, "Deployment")["worker-orders"]["spec"]["template"]["spec"]
    assert default["terminationGracePeriodSeconds"] == ManifestOptions().grace_seconds


def test_no_password_reaches_a_manifest_and_pods_share_the_changed_settings() -> None:
    """Given a broker URL, a result backend and basic auth with passwords and two changed
    settings, the manifests hold no password: the URLs come from the Secret by key, and the
    ConfigMap carries exactly the changed, non-secret settings (which load back to the same)."""
    env = {
        **EXAMPLE_ENV,
        "CELERY_BROKER_URL": "amqp://app:s3cret-broker@rabbit:5672/prod",
        "CELERY_RESULT_BACKEND": "redis://:s3cret-redis@redis:6379/0",
        "PLATFORM_MAX_RETRIES": "7",
        "PLATFORM_QUEUES": "orders,email",
    }
    result = generate(env)
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    docs = objects(result.output)
    config = by_kind(docs, "ConfigMap")["rabbit-platform"]["data"]
    assert config == {
        "PLATFORM_MAX_RETRIES": "7",
        "PLATFORM_QUEUES": "orders,email",
        "PLATFORM_SUBSCRIPTIONS_FILE": "config/subscriptions.toml",
    }
    assert load_settings(config).max_retries == 7
    env_of = by_kind(docs, "Deployment")["worker-orders"]["spec"]["template"]["spec"]["containers"][0]["env"]
    secret_keys = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in env_of if "valueFrom" in e}
    assert secret_keys == {
        "CELERY_BROKER_URL": "broker-url",
        "PLATFORM_MANAGEMENT_URL": "management-url",
        "PLATFORM_STATE_URL": "state-url",
        "CELERY_RESULT_BACKEND": "celery-result-backend",
    }
    assert "worker-payments" not in by_kind(docs, "Deployment")


def test_a_queue_whose_name_is_too_long_for_kubernetes_is_one_line_and_exit_4() -> None:
    queue = "q" + "x" * 60
    result = generate({"PLATFORM_QUEUES": queue})
    assert result.exit_code == 4
    assert result.output.strip() == (
        f"error: queue {queue!r} gives 'worker-{queue}', not a Kubernetes name (at most 63 characters)"
    )


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--namespace", "Shop_NS", "is not a Kubernetes name"),
        ("--secret", "-x", "is not a Kubernetes name"),
        ("--prometheus-url", "http://admin:pw@prometheus:9090", "must not carry credentials"),
        ("--prometheus-url", "prometheus:9090", "must be an http(s) URL"),
    ],
)
def test_a_bad_option_is_refused_with_exit_2_and_no_password_echoed(
    option: str, value: str, says: str
) -> None:
    result = generate(EXAMPLE_ENV, option, value)
    assert result.exit_code == 2
    assert (
        says in result.output and "pw@" not in result.output.replace(value, "") and "---" not in result.output
    )


def test_two_queues_with_the_same_kubernetes_name_are_refused() -> None:
    limits = ScaleLimits()
    with pytest.raises(ValueError, match="both give 'worker-a-b'"):
        manifest_files([QueueScaling("a_b", limits), QueueScaling("a-b", limits)], ManifestOptions(), {})


def test_writing_to_a_folder_removes_the_files_of_queues_that_are_gone(tmp_path: Path) -> None:
    """Given a folder with a worker file of a queue no longer configured, and a file of the
    operator's own, when the manifests are written there, the stale worker file goes and the
    operator's file stays."""
    (tmp_path / "worker-gone.yaml").write_text("old")
    (tmp_path / "kustomization.yaml").write_text("mine")
    result = generate(EXAMPLE_ENV, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "worker-gone.yaml").exists()
    assert (tmp_path / "kustomization.yaml").read_text() == "mine"
    assert "wrote 13 files" in result.output


def test_an_unwritable_output_folder_is_one_line_and_exit_5(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = generate(EXAMPLE_ENV, "--out", str(blocker / "k8s"))
    assert result.exit_code == 5
    assert result.output.startswith("error: can't write ") and result.output.count("\n") == 1


_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC_-./:", min_size=1, max_size=8)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.text(max_size=12),
    st.sampled_from(["true", "no", "~", "10", "1.5", "a: b", "- x", "#c", "'q'", '"q"', "", " "]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)),
    max_leaves=20,
)


@given(st.lists(st.dictionaries(_keys, _values, min_size=1, max_size=5), min_size=1, max_size=3))
def test_the_yaml_writer_reads_back_as_the_same_data(docs) -> None:
    """Any mapping of strings, numbers, booleans, nulls, lists and mappings, written by the
    small YAML writer, is read back by PyYAML as the same data."""
    assert list(yaml.safe_load_all(documents(docs))) == docs
