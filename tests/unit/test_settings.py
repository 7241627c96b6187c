"""load_settings(): typed settings from the environment, bad values named."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from config.settings import ENVIRONMENT_NAMES, Settings, SettingsError, load_settings


def test_an_empty_environment_gives_the_defaults() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.queues == ("orders", "payments", "inventory", "email", "analytics")
    assert settings.default_queue == "default"
    assert (settings.retry_base, settings.retry_jitter_max, settings.retry_max_delay) == (1.0, 0.5, 60.0)
    assert (settings.max_retries, settings.max_unknown_retries) == (5, 2)


def test_blank_values_fall_back_to_the_defaults() -> None:
    blank = {variable: "  " for variable in ENVIRONMENT_NAMES.values()}
    blank["CELERY_RESULT_BACKEND"] = ""
    assert load_settings(blank) == Settings()


def test_every_setting_has_an_environment_variable() -> None:
    assert set(ENVIRONMENT_NAMES) == {field.name for field in fields(Settings)}
    assert len(set(ENVIRONMENT_NAMES.values())) == len(ENVIRONMENT_NAMES)


def test_unrelated_variables_are_ignored() -> None:
    assert load_settings({"PATH": "/bin", "PLATFORM_UNKNOWN": "x"}) == Settings()


PARSED = [
    ("broker_url", "amqps://user:pw@rabbit:5671/prod", "amqps://user:pw@rabbit:5671/prod"),
    ("broker_url", "pyamqp://guest@localhost//", "pyamqp://guest@localhost//"),
    ("queues", "orders, fraud ,email", ("orders", "fraud", "email")),
    ("queues", "orders,", ("orders",)),
    ("default_queue", "misc", "misc"),
    ("task_modules", "tasks.orders, tasks.events.fraud", ("tasks.orders", "tasks.events.fraud")),
    ("retry_base", "0.25", 0.25),
    ("retry_base", "0", 0.0),
    ("retry_jitter_max", "0", 0.0),
    ("retry_jitter_max", "1.5", 1.5),
    ("retry_max_delay", "30", 30.0),
    ("max_retries", "0", 0),
    ("max_retries", "8", 8),
    ("max_unknown_retries", "1", 1),
    ("delivery_limit", "1", 1),
    ("delivery_limit", "10", 10),
    ("publish_timeout", "2.5", 2.5),
    ("traceback_limit", "100", 100),
    (
        "extra_transient",
        "workers.errors.TransientError, builtins.OSError",
        ("workers.errors.TransientError", "builtins.OSError"),
    ),
    ("extra_permanent", "json.JSONDecodeError", ("json.JSONDecodeError",)),
    ("state_url", "postgresql://u:pw@db/platform", "postgresql://u:pw@db/platform"),
    ("state_url", "postgres://db/platform", "postgres://db/platform"),
    ("state_url", "sqlite:////tmp/state.sqlite3", "sqlite:////tmp/state.sqlite3"),
    ("idempotency", "false", False),
    ("task_sent_events", "yes", True),
    ("idempotency", "0", False),
    ("idempotency", "No", False),
    ("idempotency", "off", False),
    ("idempotency", "TRUE", True),
    ("idempotency", "1", True),
    ("idempotency", "yes", True),
    ("idempotency", " on ", True),
    ("result_backend", "rpc://", "rpc://"),
    ("result_backend", "", ""),
    ("concurrency", "8", 8),
    ("run_dir", " /var/run/platform ", "/var/run/platform"),
    ("management_url", "https://admin:pw@rabbit:15671/api/", "https://admin:pw@rabbit:15671/api/"),
    ("flower_address", "0.0.0.0", "0.0.0.0"),
    ("flower_port", "8080", 8080),
    ("flower_basic_auth", "admin:secret,ops:pw", "admin:secret,ops:pw"),
    ("flower_url", "https://flower.example/", "https://flower.example/"),
    ("alert_webhook_url", "http://127.0.0.1:9/hook", "http://127.0.0.1:9/hook"),
    ("alert_interval", "30", 30.0),
    ("alert_repeat_after", "0", 0.0),
    ("alert_dlq_inflow_per_hour", "25", 25),
    ("alert_queue_depth", "500", 500),
    ("alert_no_consumer_after", "0", 0.0),
    ("alert_no_consumer_after", "300", 300.0),
    ("metrics_port", "9100", 9100),
    ("replay_max_refail_ratio", "0.25", 0.25),
    ("events_exchange", " shop.events ", "shop.events"),
    ("events_source", "/shop/orders", "/shop/orders"),
    ("subscriptions_file", "config/subscriptions.toml", "config/subscriptions.toml"),
    ("max_message_bytes", "5000000", 5_000_000),
    ("claim_check", "on", True),
    ("blob_dir", "/var/lib/platform/blobs", "/var/lib/platform/blobs"),
    ("event_log_retention", "3600", 3600.0),
    ("event_log_retention", "0", 0.0),
    ("subscriber_max_length", "10000", 10_000),
    ("subscriber_max_age", "86400", 86400.0),
    ("subscriber_overflow", "dead-letter", "dead-letter"),
    ("subscriber_overflow", "Reject-Publish", "reject-publish"),
    ("compose_file", " deploy/compose.yml ", "deploy/compose.yml"),
    ("compose_project", "shop", "shop"),
    ("scale_min", "0", 0),
    ("scale_max", "20", 20),
    ("scale_up_above", "5000", 5000),
    ("scale_down_below", "0", 0),
    ("scale_step_up", "4", 4),
    ("scale_step_down", "2", 2),
    ("scale_cooldown", "0", 0.0),
    ("scale_window", "600", 600.0),
    ("scale_target_latency", "2.5", 2.5),
    ("scale_queues", "orders:max=20", (("orders", (("scale_max", 20.0),)),)),
    ("scale_interval", "0.5", 0.5),
    ("saga_relay_interval", "0.5", 0.5),
    ("saga_relay_interval", "0", 0.0),
    ("saga_relay_after_commit", "false", False),
    ("saga_step_deadline", "4", 4.0),
    ("saga_stuck_after", "60", 60.0),
    ("broker_url", "amqp://u:p@h:5681/v; amqp://u:p@h:5682/v", "amqp://u:p@h:5681/v;amqp://u:p@h:5682/v"),
    (
        "management_url",
        "http://u:p@h:15681/api/;http://u:p@h:15682/api/",
        "http://u:p@h:15681/api/;http://u:p@h:15682/api/",
    ),
    ("broker_heartbeat", "10", 10.0),
    ("cluster_dir", "/tmp/cluster", "/tmp/cluster"),
    ("cluster_port", "5691", 5691),
    ("cluster", "off", False),
    ("worker_layout", "Prefork", "prefork"),
    ("worker_prefetch", "4", 4),
    ("broker_tls_verify", "off", False),
]

#: Settings parsed in tests/unit/test_tls_settings.py instead: they name files that must exist
#: (made there with openssl) and need an amqps:// URL beside them.
TLS_FILE_FIELDS = {"broker_tls_ca", "broker_tls_cert", "broker_tls_key"}


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [pytest.param(f, raw, expected, id=f"{ENVIRONMENT_NAMES[f]}={raw!r}") for f, raw, expected in PARSED],
)
def test_each_setting_is_parsed_from_its_environment_variable(field: str, raw: str, expected: Any) -> None:
    settings = load_settings({ENVIRONMENT_NAMES[field]: raw})
    assert getattr(settings, field) == expected
    assert type(getattr(settings, field)) is type(expected)


def test_every_setting_is_covered_by_the_parsing_table() -> None:
    assert {field for field, _, _ in PARSED} | TLS_FILE_FIELDS == set(ENVIRONMENT_NAMES)


BAD_VALUES = {
    "CELERY_BROKER_URL": ["redis://localhost:6379/0", "localhost:5672", "http://rabbit/", "amqp:/rabbit"],
    "PLATFORM_QUEUES": [
        "Orders",
        "orders.retry",
        "1orders",
        "_orders",
        "orders;payments",
        "ördërs",
        "a" * 65,
        "orders,orders",
        "orders, payments, orders",
        ",,",
    ],
    "PLATFORM_DEFAULT_QUEUE": ["Default", "default.queue", "-x", "default queue"],
    "PLATFORM_RETRY_BASE": ["one", "-1", "1s", "nan"],
    "PLATFORM_RETRY_JITTER_MAX": ["-0.1", "abc", "nan"],
    "PLATFORM_RETRY_MAX_DELAY": ["0", "-60", "sixty", "nan"],
    "PLATFORM_MAX_RETRIES": ["-1", "2.5", "five", "nan"],
    "PLATFORM_MAX_UNKNOWN_RETRIES": ["-1", "x"],
    "PLATFORM_DELIVERY_LIMIT": ["0", "-3", "many"],
    "PLATFORM_PUBLISH_TIMEOUT": ["0", "0.05", "-1", "soon", "nan"],
    "PLATFORM_TRACEBACK_LIMIT": ["99", "0", "4k"],
    "PLATFORM_STATE_URL": ["mysql://db/platform", "/tmp/state.sqlite3", "redis://localhost"],
    "PLATFORM_IDEMPOTENCY": ["maybe", "2", "enabled", "tru"],
    "PLATFORM_CONCURRENCY": ["0", "-2", "auto"],
    "PLATFORM_WORKER_LAYOUT": ["gevent", "eventlet", "solo,prefork"],
    "PLATFORM_WORKER_PREFETCH": ["-1", "1001", "two"],
    "PLATFORM_BROKER_TLS_VERIFY": ["maybe"],
    "PLATFORM_BROKER_TLS_CA": ["/no/such/ca.pem"],
    "PLATFORM_BROKER_TLS_CERT": ["/no/such/client.pem"],
    "PLATFORM_BROKER_TLS_KEY": ["/no/such/client.key"],
    "PLATFORM_BROKER_HEARTBEAT": ["-1", "nan", "often"],
    "PLATFORM_MANAGEMENT_URL": ["ftp://rabbit/", "rabbit:15672/api/", "amqp://rabbit"],
    "FLOWER_PORT": ["0", "-1", "http", "65536", "70000"],
    "FLOWER_BASIC_AUTH": ["admin", "admin:", ":secret", "admin:secret,ops"],
    "PLATFORM_EVENTS_EXCHANGE": ["amq.topic", "events exchange", "a/b"],
    "PLATFORM_MAX_MESSAGE_BYTES": ["100", "-1", "1MB"],
    "PLATFORM_CLAIM_CHECK": ["sometimes"],
    "PLATFORM_TASK_SENT_EVENTS": ["on-ish"],
    "PLATFORM_EVENT_LOG_RETENTION": ["-1", "7d"],
    "PLATFORM_SUBSCRIBER_MAX_LENGTH": ["-5", "lots"],
    "PLATFORM_SUBSCRIBER_OVERFLOW": ["drop-head", "reject"],
    "PLATFORM_SCALE_MIN": ["-1", "one"],
    "PLATFORM_SCALE_MAX": ["0", "lots"],
    "PLATFORM_SCALE_COOLDOWN": ["-1", "1m"],
    "PLATFORM_SCALE_QUEUES": ["orders", "orders:max", "orders:max=x"],
    "PLATFORM_SCALE_INTERVAL": ["0", "2s"],
}


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        pytest.param(variable, raw, id=f"{variable}={raw!r}")
        for variable, values in BAD_VALUES.items()
        for raw in values
    ],
)
def test_a_bad_value_raises_settings_error_naming_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings({variable: raw})


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({"PLATFORM_DEFAULT_QUEUE": "orders"}, id="default queue set to a work queue"),
        pytest.param({"PLATFORM_QUEUES": "orders,default"}, id="work queues include the default queue"),
        pytest.param(
            {"PLATFORM_QUEUES": "jobs", "PLATFORM_DEFAULT_QUEUE": "jobs"}, id="both set to the same queue"
        ),
    ],
)
def test_the_default_queue_must_differ_from_the_work_queues(environ: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="PLATFORM_DEFAULT_QUEUE"):
        load_settings(environ)


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


def test_settings_are_frozen() -> None:
    settings = load_settings({})
    with pytest.raises(AttributeError):
        settings.max_retries = 9  # type: ignore[misc]


def test_platform_cluster_takes_the_broker_and_management_url_lists_that_cluster_up_wrote(tmp_path) -> None:
    """Given the file `make cluster-up` writes, PLATFORM_CLUSTER=1 makes its URL lists the settings."""
    (tmp_path / "platform.env").write_text(
        "CELERY_BROKER_URL=amqp://platform:pw@127.0.0.1:5681/platform;amqp://platform:pw@127.0.0.1:5682/platform\n"
        "PLATFORM_MANAGEMENT_URL=http://platform:pw@127.0.0.1:15681/api/\n"
    )
    settings = load_settings({"PLATFORM_CLUSTER": "1", "PLATFORM_CLUSTER_DIR": str(tmp_path)})
    assert settings.cluster
    assert settings.broker_url.split(";") == [
        "amqp://platform:pw@127.0.0.1:5681/platform",
        "amqp://platform:pw@127.0.0.1:5682/platform",
    ]
    assert settings.management_url == "http://platform:pw@127.0.0.1:15681/api/"


def test_platform_cluster_without_a_cluster_says_to_run_make_cluster_up(tmp_path) -> None:
    with pytest.raises(SettingsError, match="make cluster-up"):
        load_settings({"PLATFORM_CLUSTER": "1", "PLATFORM_CLUSTER_DIR": str(tmp_path / "none")})


def test_a_bad_url_in_a_failover_list_is_named_by_its_place_without_echoing_the_password() -> None:
    with pytest.raises(SettingsError, match="URL 2 of 2") as raised:
        load_settings({"CELERY_BROKER_URL": "amqp://u:secret@h:1/v;http://u:secret@h:2/v"})
    assert "secret" not in str(raised.value)
