"""Kubernetes manifests for the platform's workers, scaled by KEDA on the due backlog (pure: no I/O).

What is generated, from the topology's work and subscriber queues and each
queue's :class:`~workers.scaling.limits.ScaleLimits`::

    configmap.yaml       the settings every pod shares (queues, retries, subscriptions...)
    metrics.yaml         the metrics exporter: Deployment + Service (Prometheus scrapes it)
    worker-<queue>.yaml  per queue: a worker Deployment (one image, role by command, as in
                         compose) and a KEDA ScaledObject fed by the exporter's metric

KEDA reads ``platform_queue_due_backlog{queue="<q>"}`` through its
``prometheus`` trigger: ready plus unacknowledged messages. Its own RabbitMQ
scaler over AMQP counts ready messages only, so it scales away workers that
hold unacknowledged work (kedacore/keda#356); see :mod:`workers.scaling.signal`.

How the policy's limits map onto KEDA and the HPA it drives (KEDA's HPA tracks
a target; it has no threshold band, so the mapping is close, not equal)::

    min_workers, max_workers  minReplicaCount, maxReplicaCount
    up_above                  the trigger's threshold: one worker per up_above due messages
                              (metricType AverageValue: desired = ceil(backlog / up_above))
    0 workers, anything due   activationThreshold "0": any due backlog wakes the queue (min 0)
    step_up / cooldown        behavior.scaleUp: at most step_up pods per cooldown s, no window
    step_down / cooldown      behavior.scaleDown: at most step_down pods per cooldown s
    window                    behavior.scaleDown.stabilizationWindowSeconds (the highest want
                              of the window wins, as in decide()), and cooldownPeriod (KEDA's
                              wait before the last worker goes, with min 0)
    down_below                no equivalent (the HPA's own 10 % tolerance holds small changes)
    target_latency            not mapped (needs the median task time, which nothing records)

A lost metric holds the pool: ``ignoreNullValues: "false"`` makes the scaler
fail on an empty answer (exporter down, queue not declared) instead of reading
it as 0, and the HPA keeps its replicas while its metric fails.

Scaling down never kills a busy worker mid-task: the pod's command execs
``celery worker``, so Kubernetes' SIGTERM reaches Celery itself, which does a
warm shutdown (stops taking messages, finishes what it runs, exits); the grace
period (``terminationGracePeriodSeconds``) must be longer than the longest
task. A worker killed after it is still redelivered, never lost (late ack),
but its delivery counts against the queue's delivery limit. No ``preStop``
hook: it would only delay the SIGTERM.

Credentials never appear in a manifest: the broker, management and state
URLs come from a Secret the operator creates (``--secret``, keys
:data:`SECRET_KEYS`). The state store must be PostgreSQL: pods don't share a
SQLite file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from workers.scaling.limits import ScaleLimits
from workers.scaling.names import worker_name
from workers.scaling.yaml_text import documents

#: The metric KEDA reads (exported by ``python -m workers.ops.metrics``).
BACKLOG_METRIC = "platform_queue_due_backlog"
#: The value of every object's ``app.kubernetes.io/name`` label.
APP_NAME = "rabbit-platform"
#: Environment variable -> key in the operator's Secret: the URLs that carry passwords.
SECRET_KEYS: Mapping[str, str] = {
    "CELERY_BROKER_URL": "broker-url",
    "PLATFORM_MANAGEMENT_URL": "management-url",
    "PLATFORM_STATE_URL": "state-url",
}
#: Start scripts of the image, one per role (compose/scripts/).
WORKER_COMMAND = "compose/scripts/start-worker.sh"
METRICS_COMMAND = "compose/scripts/start-metrics.sh"
#: The image's user (compose/Dockerfile).
IMAGE_USER_ID = 10001
#: Longest HPA policy period and stabilisation window Kubernetes accepts, in seconds.
HPA_MAX_PERIOD = 1800
HPA_MAX_WINDOW = 3600


@dataclass(frozen=True)
class ManifestOptions:
    """Where and how the manifests deploy: the parts the topology and settings don't say."""

    #: The platform's image (built from compose/Dockerfile).
    image: str = "rabbit-platform:latest"
    namespace: str = "rabbit-platform"
    #: The Prometheus that scrapes the metrics exporter; KEDA queries it.
    prometheus_url: str = "http://prometheus.monitoring.svc:9090"
    #: The Secret holding the URLs of :data:`SECRET_KEYS`.
    secret: str = "rabbit-platform"
    #: Seconds a stopping worker has for its warm shutdown: longer than the longest task.
    grace_seconds: int = 300
    #: Seconds between two KEDA reads of the metric.
    polling_interval: int = 15
    #: The exporter's port (``PLATFORM_METRICS_PORT``).
    metrics_port: int = 9808


@dataclass(frozen=True)
class QueueScaling:
    """One work or subscriber queue and its scaling limits."""

    queue: str
    limits: ScaleLimits


def backlog_query(queue: str) -> str:
    """The PromQL KEDA runs for ``queue``: one number, even with several exporters scraped."""
    if not re.fullmatch(r"[a-z0-9._-]+", queue):
        raise ValueError(f"queue {queue!r} can't go into a PromQL label matcher as it is")
    return f'max({BACKLOG_METRIC}{{queue="{queue}"}})'


def labels(component: str) -> dict[str, str]:
    """The labels of one component's objects (and its pods' selector)."""
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/component": component}


def config_map(options: ManifestOptions, settings_env: Mapping[str, str]) -> dict[str, object]:
    """The ConfigMap of settings every pod reads (no secrets in it)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(APP_NAME, options, labels("settings")),
        "data": dict(settings_env),
    }


def worker_deployment(queue: str, options: ManifestOptions, secrets: Mapping[str, str]) -> dict[str, object]:
    """The Deployment of ``queue``'s workers, without ``replicas`` (KEDA's HPA owns the count).

    A ``replicas`` field would be reset by every ``kubectl apply``, fighting the HPA.
    """
    name = worker_name(queue)
    pod_labels = labels(name)
    container = {
        "name": "worker",
        "image": options.image,
        "command": [WORKER_COMMAND],
        "env": [{"name": "WORKER_QUEUES", "value": queue}, *_secret_env(options, secrets)],
        "envFrom": [{"configMapRef": {"name": APP_NAME}}],
        # As compose's healthcheck: the worker's own node answers ping.
        "livenessProbe": {
            "exec": {
                "command": [
                    "sh",
                    "-c",
                    'celery -A config inspect ping -d "worker@$HOSTNAME" --timeout 10 >/dev/null',
                ]
            },
            "initialDelaySeconds": 60,
            "periodSeconds": 60,
            "timeoutSeconds": 30,
            "failureThreshold": 3,
        },
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, options, {**pod_labels, "rabbit-platform/queue": queue}),
        "spec": {
            "selector": {"matchLabels": pod_labels},
            # A new worker starts before an old one stops: a rollout never leaves the queue without one.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    # SIGTERM reaches celery (the start script execs it): a warm shutdown.
                    "terminationGracePeriodSeconds": options.grace_seconds,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": IMAGE_USER_ID},
                    "containers": [container],
                },
            },
        },
    }


def scaled_object(queue: str, limits: ScaleLimits, options: ManifestOptions) -> dict[str, object]:
    """The KEDA ScaledObject of ``queue``: its due backlog from Prometheus, its limits as KEDA fields."""
    name = worker_name(queue)
    period = min(max(round(limits.cooldown), 1), HPA_MAX_PERIOD)
    window = min(max(round(limits.window), 0), HPA_MAX_WINDOW)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(name, options, {**labels(name), "rabbit-platform/queue": queue}),
        "spec": {
            "scaleTargetRef": {"name": name},
            "pollingInterval": options.polling_interval,
            # Only from 1 to 0: how long nothing may be due before the last worker goes.
            "cooldownPeriod": window,
            "minReplicaCount": limits.min_workers,
            "maxReplicaCount": limits.max_workers,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleUp": {
                            "stabilizationWindowSeconds": 0,
                            "selectPolicy": "Max",
                            "policies": [
                                {"type": "Pods", "value": max(limits.step_up, 1), "periodSeconds": period}
                            ],
                        },
                        "scaleDown": {
                            "stabilizationWindowSeconds": window,
                            "selectPolicy": "Min",
                            "policies": [
                                {"type": "Pods", "value": max(limits.step_down, 1), "periodSeconds": period}
                            ],
                        },
                    }
                }
            },
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": options.prometheus_url,
                        "query": backlog_query(queue),
                        "threshold": str(max(limits.up_above, 1)),
                        "activationThreshold": "0",
                        "ignoreNullValues": "false",
                    },
                }
            ],
        },
    }


def metrics_objects(options: ManifestOptions, secrets: Mapping[str, str]) -> list[dict[str, object]]:
    """The metrics exporter: one Deployment and its Service, annotated for Prometheus to scrape."""
    name = "metrics"
    pod_labels = labels(name)
    port = options.metrics_port
    scrape = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }
    deployment: dict[str, object] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, options, pod_labels),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": scrape},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": IMAGE_USER_ID},
                    "containers": [
                        {
                            "name": "metrics",
                            "image": options.image,
                            "command": [METRICS_COMMAND],
                            "env": [
                                {"name": "PLATFORM_METRICS_PORT", "value": str(port)},
                                *_secret_env(options, secrets),
                            ],
                            "envFrom": [{"configMapRef": {"name": APP_NAME}}],
                            "ports": [{"name": "metrics", "containerPort": port}],
                            # A TCP check: a GET /metrics would read the management API each time.
                            "readinessProbe": {"tcpSocket": {"port": "metrics"}, "periodSeconds": 15},
                            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
                        }
                    ],
                },
            },
        },
    }
    service: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {**_metadata(name, options, pod_labels), "annotations": scrape},
        "spec": {
            "selector": pod_labels,
            "ports": [{"name": "metrics", "port": port, "targetPort": "metrics"}],
        },
    }
    return [deployment, service]


def manifest_files(
    queues: Sequence[QueueScaling],
    options: ManifestOptions,
    settings_env: Mapping[str, str],
    secrets: Mapping[str, str] = SECRET_KEYS,
) -> dict[str, str]:
    """Every manifest as YAML text, by file name (see the module docstring).

    Args:
        queues: the work and subscriber queues, each with its limits.
        options: image, namespace, Prometheus, Secret, grace period, polling.
        settings_env: the settings the pods share, as environment variables.
        secrets: environment variable -> key in the Secret, for the settings that may
            carry a password (at least :data:`SECRET_KEYS`).

    Returns:
        ``{file name: YAML documents}``, in a stable order.

    Raises:
        ValueError: two queues give the same Kubernetes name, or one gives an invalid name.
    """
    names: dict[str, str] = {}
    for entry in queues:
        name = worker_name(entry.queue)
        if name in names:
            raise ValueError(f"queues {names[name]!r} and {entry.queue!r} both give {name!r}")
        names[name] = entry.queue
    files = {
        "configmap.yaml": documents([config_map(options, settings_env)]),
        "metrics.yaml": documents(metrics_objects(options, secrets)),
    }
    for entry in queues:
        objects = [
            worker_deployment(entry.queue, options, secrets),
            scaled_object(entry.queue, entry.limits, options),
        ]
        files[f"{worker_name(entry.queue)}.yaml"] = documents(objects)
    return files


def _metadata(name: str, options: ManifestOptions, object_labels: Mapping[str, str]) -> dict[str, object]:
    return {"name": name, "namespace": options.namespace, "labels": dict(object_labels)}


def _secret_env(options: ManifestOptions, secrets: Mapping[str, str]) -> list[dict[str, object]]:
    return [
        {"name": variable, "valueFrom": {"secretKeyRef": {"name": options.secret, "key": key}}}
        for variable, key in secrets.items()
    ]
