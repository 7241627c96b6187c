"""The classifier table: which exception means transient, permanent or unknown."""

from __future__ import annotations

import json
import socket
import sys
from datetime import UTC, datetime

import httpx
import pydantic
import pytest
import requests

from workers.delivery.classify import (
    Classification,
    ClassifierRules,
    ErrorClass,
    classify,
    import_types,
    resolve_types,
    retry_after_seconds,
)
from workers.errors import BusinessRuleViolation, PermanentError, TransientError

TRANSIENT = ErrorClass.TRANSIENT
PERMANENT = ErrorClass.PERMANENT
UNKNOWN = ErrorClass.UNKNOWN


def httpx_status_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    """A real ``httpx.HTTPStatusError`` as ``response.raise_for_status()`` raises it."""
    request = httpx.Request("GET", "https://api.example.test/orders/1")
    response = httpx.Response(status, headers=headers, request=request)
    return httpx.HTTPStatusError(f"HTTP {status}", request=request, response=response)


def requests_http_error(status: int, headers: dict[str, str] | None = None) -> requests.HTTPError:
    """A real ``requests.HTTPError`` carrying a ``requests.Response``."""
    response = requests.Response()
    response.status_code = status
    response.url = "https://api.example.test/orders/1"
    response.headers.update(headers or {})
    return requests.HTTPError(f"{status} Error", response=response)


class Order(pydantic.BaseModel):
    id: int
    total: float


def pydantic_validation_error() -> pydantic.ValidationError:
    try:
        Order.model_validate({"id": "not-a-number"})
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError("the model accepted invalid input")


def json_decode_error() -> json.JSONDecodeError:
    try:
        json.loads("{not json")
    except json.JSONDecodeError as exc:
        return exc
    raise AssertionError("json.loads accepted invalid input")


HTTP_STATUS_CASES = [
    (429, TRANSIENT),
    (502, TRANSIENT),
    (503, TRANSIENT),
    (504, TRANSIENT),
    (400, PERMANENT),
    (401, PERMANENT),
    (403, PERMANENT),
    (404, PERMANENT),
    (422, PERMANENT),
    (500, UNKNOWN),
]

CONTRACT = [
    pytest.param(TimeoutError("read timed out"), TRANSIENT, id="TimeoutError"),
    pytest.param(
        socket.timeout("timed out"),  # noqa: UP041 - the contract names socket.timeout itself
        TRANSIENT,
        id="socket.timeout",
    ),
    pytest.param(ConnectionRefusedError(111, "refused"), TRANSIENT, id="ConnectionRefusedError"),
    pytest.param(ConnectionResetError(104, "reset by peer"), TRANSIENT, id="ConnectionResetError"),
    *[
        pytest.param(httpx_status_error(status), expected, id=f"httpx-{status}-{expected}")
        for status, expected in HTTP_STATUS_CASES
    ],
    *[
        pytest.param(requests_http_error(status), expected, id=f"requests-{status}-{expected}")
        for status, expected in HTTP_STATUS_CASES
    ],
    pytest.param(
        httpx.ConnectTimeout("connect timed out", request=httpx.Request("GET", "https://x.test/")),
        TRANSIENT,
        id="httpx.ConnectTimeout",
    ),
    pytest.param(
        requests.exceptions.ConnectionError("connection refused"),
        TRANSIENT,
        id="requests.ConnectionError",
    ),
    pytest.param(json_decode_error(), PERMANENT, id="json.JSONDecodeError"),
    pytest.param(pydantic_validation_error(), PERMANENT, id="pydantic.ValidationError"),
    pytest.param(TransientError("try later"), TRANSIENT, id="TransientError"),
    pytest.param(PermanentError("bad input"), PERMANENT, id="PermanentError"),
    pytest.param(BusinessRuleViolation("order total negative"), PERMANENT, id="BusinessRuleViolation"),
    pytest.param(RuntimeError("boom"), UNKNOWN, id="RuntimeError"),
    pytest.param(KeyError("sku"), UNKNOWN, id="KeyError"),
]


@pytest.mark.parametrize(("exc", "expected"), CONTRACT)
def test_each_exception_of_the_contract_gets_its_class(exc: BaseException, expected: ErrorClass) -> None:
    assert classify(exc).error_class is expected


def test_error_classes_are_the_names_written_in_x_error_class() -> None:
    assert {c.value for c in ErrorClass} == {
        "transient",
        "permanent",
        "unknown",
        "poison",
        "undecodable",
        "disallowed",
        "unknown-task",
        "expired",
        "overflow",
        "rejected",
        "cancelled",
    }


class Flaky(Exception):
    """A task's own exception, unknown to the built-in table."""


def always(verdict: str | None):
    return lambda exc: verdict


PRECEDENCE = [
    pytest.param(
        RuntimeError("x"),
        ClassifierRules(permanent=(RuntimeError,), decider=always("transient")),
        TRANSIENT,
        id="decider beats extra permanent types",
    ),
    pytest.param(
        TimeoutError("x"),
        ClassifierRules(transient=(TimeoutError,), decider=always(PERMANENT)),
        PERMANENT,
        id="decider beats extra transient types and built-ins",
    ),
    pytest.param(
        PermanentError("x"),
        ClassifierRules(decider=always("unknown")),
        UNKNOWN,
        id="decider beats PermanentError",
    ),
    pytest.param(
        RuntimeError("x"),
        ClassifierRules(transient=(RuntimeError,), decider=always(None)),
        TRANSIENT,
        id="decider returning None falls through to extra types",
    ),
    pytest.param(
        Flaky("x"),
        ClassifierRules(transient=(Flaky,)),
        TRANSIENT,
        id="extra transient type as a class",
    ),
    pytest.param(
        Flaky("x"),
        ClassifierRules(permanent=(f"{__name__}.Flaky",)),
        PERMANENT,
        id="extra permanent type as a dotted name",
    ),
    pytest.param(
        TransientError("x"),
        ClassifierRules(permanent=(TransientError,)),
        PERMANENT,
        id="extra permanent types beat TransientError",
    ),
    pytest.param(
        BusinessRuleViolation("x"),
        ClassifierRules(transient=(BusinessRuleViolation,)),
        TRANSIENT,
        id="extra transient types beat PermanentError",
    ),
    pytest.param(
        httpx_status_error(503),
        ClassifierRules(permanent=(httpx.HTTPStatusError,)),
        PERMANENT,
        id="extra types beat the HTTP status",
    ),
    pytest.param(
        json_decode_error(),
        ClassifierRules(transient=("json.JSONDecodeError",)),
        TRANSIENT,
        id="extra types beat built-in foreign types",
    ),
    pytest.param(
        TransientError("x"),
        None,
        TRANSIENT,
        id="no rules: built-ins apply",
    ),
]


@pytest.mark.parametrize(("exc", "rules", "expected"), PRECEDENCE)
def test_a_decider_beats_extra_types_which_beat_the_built_ins(
    exc: BaseException, rules: ClassifierRules | None, expected: ErrorClass
) -> None:
    assert classify(exc, rules).error_class is expected


MERGED = [
    pytest.param(
        ClassifierRules(permanent=(ValueError,)),
        ClassifierRules(transient=(ValueError,)),
        ValueError("x"),
        TRANSIENT,
        id="task transient type beats settings permanent type",
    ),
    pytest.param(
        ClassifierRules(transient=(ValueError,)),
        ClassifierRules(permanent=(ValueError,)),
        ValueError("x"),
        PERMANENT,
        id="task permanent type beats settings transient type",
    ),
    pytest.param(
        ClassifierRules(permanent=(OSError,)),
        ClassifierRules(transient=(ConnectionRefusedError,)),
        ConnectionRefusedError("x"),
        TRANSIENT,
        id="task transient subclass beats settings permanent base class",
    ),
    pytest.param(
        ClassifierRules(transient=(Flaky,)),
        ClassifierRules(),
        Flaky("x"),
        TRANSIENT,
        id="settings rules apply when the task has none",
    ),
    pytest.param(
        ClassifierRules(decider=always("permanent")),
        ClassifierRules(decider=always("transient")),
        Flaky("x"),
        TRANSIENT,
        id="task decider replaces settings decider",
    ),
    pytest.param(
        ClassifierRules(decider=always("permanent")),
        ClassifierRules(transient=(Flaky,)),
        Flaky("x"),
        PERMANENT,
        id="settings decider kept when the task has none",
    ),
]


@pytest.mark.parametrize(("settings_rules", "task_rules", "exc", "expected"), MERGED)
def test_task_rules_merged_over_settings_rules_take_precedence(
    settings_rules: ClassifierRules, task_rules: ClassifierRules, exc: BaseException, expected: ErrorClass
) -> None:
    merged = settings_rules.merged_with(task_rules)
    assert classify(exc, merged).error_class is expected


def test_merged_with_layers_the_other_rules_over_these() -> None:
    """The task's layer is consulted first, then the settings' layer."""
    settings_rules = ClassifierRules(transient=(KeyError,), permanent=(ValueError,))
    task_rules = ClassifierRules(transient=(Flaky,), permanent=(TypeError,))
    merged = settings_rules.merged_with(task_rules)
    layers = list(merged.layers())
    assert [(layer.transient, layer.permanent) for layer in layers] == [
        ((Flaky,), (TypeError,)),
        ((KeyError,), (ValueError,)),
    ]


def test_resolve_types_ignores_modules_that_are_not_imported() -> None:
    """Given a module nobody imported, its names resolve to nothing and it stays unimported."""
    assert "tabnanny" not in sys.modules
    resolved = resolve_types(
        ["tabnanny.NannyNag", "surely_not_a_module.Error", "json.JSONDecodeError", "KeyError", Flaky]
    )
    assert resolved == (json.JSONDecodeError, KeyError, Flaky)
    assert "tabnanny" not in sys.modules


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("json.dumps", id="a function"),
        pytest.param("json.NoSuchError", id="a missing attribute"),
        pytest.param("sys.version", id="a string"),
    ],
)
def test_resolve_types_skips_names_that_are_not_exception_classes(name: str) -> None:
    assert resolve_types([name]) == ()


def test_import_types_imports_exception_classes_by_dotted_path() -> None:
    assert import_types(["json.JSONDecodeError", "builtins.TimeoutError", "KeyError"]) == (
        json.JSONDecodeError,
        TimeoutError,
        KeyError,
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        pytest.param("surely_not_a_module.Error", "not an importable", id="missing module"),
        pytest.param("json.NoSuchError", "not an importable", id="missing attribute"),
        pytest.param("NoSuchBuiltinError", "not an importable", id="missing builtin"),
        pytest.param("", "not an importable", id="empty name"),
        pytest.param(".Error", "not an importable", id="leading dot"),
        pytest.param("..Error", "not an importable", id="relative module"),
        pytest.param("json.", "not an importable", id="trailing dot"),
        pytest.param("json.dumps", "not an exception class", id="a function"),
        pytest.param("builtins.int", "not an exception class", id="a class that is no exception"),
    ],
)
def test_import_types_raises_value_error_naming_a_bad_name(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as raised:
        import_types([name])
    assert repr(name) in str(raised.value)


#: 2015-10-21 07:27:30 UTC, 30 s before the HTTP date used below.
NOW = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC).timestamp()

RETRY_AFTER = [
    pytest.param(httpx_status_error(429, {"Retry-After": "120"}), 120.0, id="httpx seconds"),
    pytest.param(httpx_status_error(503, {"Retry-After": " 2.5 "}), 2.5, id="httpx fractional seconds"),
    pytest.param(requests_http_error(429, {"retry-after": "7"}), 7.0, id="requests seconds lower-case"),
    pytest.param(httpx_status_error(429, {"Retry-After": "-5"}), 0.0, id="negative seconds become 0"),
    pytest.param(
        httpx_status_error(503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        30.0,
        id="httpx HTTP date",
    ),
    pytest.param(
        requests_http_error(503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        30.0,
        id="requests HTTP date",
    ),
    pytest.param(
        httpx_status_error(503, {"Retry-After": "Wed, 21 Oct 2015 07:00:00 GMT"}),
        0.0,
        id="HTTP date in the past becomes 0",
    ),
    pytest.param(httpx_status_error(503, {"Retry-After": "soon"}), None, id="junk is ignored"),
    pytest.param(httpx_status_error(503, {"Retry-After": ""}), None, id="empty header"),
    pytest.param(httpx_status_error(503), None, id="no header"),
    pytest.param(TransientError("slow down", retry_after=12.5), 12.5, id="TransientError retry_after"),
    pytest.param(TransientError("slow down", retry_after=3), 3.0, id="TransientError int retry_after"),
    pytest.param(TransientError("slow down", retry_after=-1), 0.0, id="TransientError negative"),
    pytest.param(TransientError("slow down"), None, id="TransientError without retry_after"),
    pytest.param(TimeoutError("x"), None, id="plain exception"),
]


@pytest.mark.parametrize(("exc", "expected"), RETRY_AFTER)
def test_retry_after_is_read_as_seconds_or_as_an_http_date(
    exc: BaseException, expected: float | None
) -> None:
    assert retry_after_seconds(exc, now=NOW) == expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        pytest.param(
            httpx_status_error(429, {"Retry-After": "120"}),
            Classification(TRANSIENT, 120.0),
            id="transient 429 carries its Retry-After",
        ),
        pytest.param(
            requests_http_error(503, {"Retry-After": "9"}),
            Classification(TRANSIENT, 9.0),
            id="transient requests 503 carries its Retry-After",
        ),
        pytest.param(
            TransientError("later", retry_after=4),
            Classification(TRANSIENT, 4.0),
            id="TransientError carries retry_after",
        ),
        pytest.param(
            httpx_status_error(400, {"Retry-After": "120"}),
            Classification(PERMANENT, None),
            id="permanent failure drops Retry-After",
        ),
        pytest.param(
            httpx_status_error(500, {"Retry-After": "120"}),
            Classification(UNKNOWN, None),
            id="unknown failure drops Retry-After",
        ),
    ],
)
def test_classify_returns_retry_after_only_for_transient_failures(
    exc: BaseException, expected: Classification
) -> None:
    assert classify(exc) == expected
