"""TLS settings: checked when they load, then handed to Celery, kombu, py-amqp and https clients.

Certificates come from a throw-away CA made with openssl (tests/support/tls.py);
no broker is needed here (tests/integration/test_tls.py has the real node).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection

from config.app import celery_config
from config.settings import Settings, SettingsError, load_settings
from config.tls import broker_ssl_options, https_context
from config.topology import Topology
from tests.support.broker import in_ci
from tests.support.tls import Authority, make_ca, openssl_missing
from workers.broker import describe_connect_error, kombu_connection, node_ssl_options

AMQPS = "amqps://platform:s3cret@localhost:5702/platform"


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authority]:
    problem = openssl_missing()
    if problem:
        if in_ci():
            pytest.fail(f"CI=true and openssl is required: {problem}")
        pytest.skip(problem)
    yield make_ca(tmp_path_factory.mktemp("ca"))


def tls_env(authority: Authority, **extra: str) -> dict[str, str]:
    return {
        "CELERY_BROKER_URL": AMQPS,
        "PLATFORM_BROKER_TLS_CA": str(authority.ca),
        "PLATFORM_BROKER_TLS_CERT": str(authority.client_cert),
        "PLATFORM_BROKER_TLS_KEY": str(authority.client_key),
        **extra,
    }


def test_given_amqps_and_the_three_files_when_loaded_then_py_amqp_gets_them_with_verification_on(
    authority: Authority,
) -> None:
    settings = load_settings(tls_env(authority))

    assert broker_ssl_options(settings) == {
        "ca_certs": str(authority.ca),
        "certfile": str(authority.client_cert),
        "keyfile": str(authority.client_key),
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": None,
    }


def test_celery_gets_the_tls_options_as_broker_use_ssl_and_only_with_amqps(authority: Authority) -> None:
    with_tls = celery_config(load_settings(tls_env(authority)), Topology(()))
    without = celery_config(Settings(), Topology(()))

    assert with_tls["broker_use_ssl"]["ca_certs"] == str(authority.ca)
    assert with_tls["broker_use_ssl"]["cert_reqs"] == ssl.CERT_REQUIRED
    assert "broker_use_ssl" not in without


def test_amqps_alone_is_tls_with_the_system_cas_and_host_name_checking() -> None:
    options = broker_ssl_options(load_settings({"CELERY_BROKER_URL": AMQPS}))
    assert options == {"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": None}


def test_verify_off_turns_certificate_and_host_name_checks_off() -> None:
    settings = load_settings({"CELERY_BROKER_URL": AMQPS, "PLATFORM_BROKER_TLS_VERIFY": "false"})
    assert broker_ssl_options(settings) == {"cert_reqs": ssl.CERT_NONE}


def test_each_call_gives_a_new_dict_because_kombu_writes_the_server_name_into_it() -> None:
    settings = load_settings({"CELERY_BROKER_URL": AMQPS})
    first = broker_ssl_options(settings)
    assert first is not None
    first["server_hostname"] = "elsewhere"
    assert broker_ssl_options(settings) == {"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": None}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param(
            {"CELERY_BROKER_URL": "amqp://u:p@h//", "PLATFORM_BROKER_TLS_CA": "{ca}"},
            "PLATFORM_BROKER_TLS_CA is set but CELERY_BROKER_URL is not amqps://",
            id="a CA with a plain amqp URL",
        ),
        pytest.param(
            {"CELERY_BROKER_URL": f"{AMQPS};amqp://u:p@h2//"},
            "CELERY_BROKER_URL mixes amqps:// and amqp:// URLs",
            id="a failover list that mixes TLS and plain",
        ),
        pytest.param(
            {"CELERY_BROKER_URL": AMQPS, "PLATFORM_BROKER_TLS_KEY": "{client_key}"},
            "PLATFORM_BROKER_TLS_KEY is set without PLATFORM_BROKER_TLS_CERT",
            id="a key without a certificate",
        ),
        pytest.param(
            {"CELERY_BROKER_URL": AMQPS, "PLATFORM_BROKER_TLS_CA": "{not_pem}"},
            "PLATFORM_BROKER_TLS_CA: '{not_pem}' holds no PEM certificate",
            id="a CA file that is no certificate",
        ),
        pytest.param(
            {
                "CELERY_BROKER_URL": AMQPS,
                "PLATFORM_BROKER_TLS_CERT": "{client_cert}",
                "PLATFORM_BROKER_TLS_KEY": "{server_key}",
            },
            "are not a PEM certificate and its matching private key",
            id="a key that belongs to another certificate",
        ),
        pytest.param(
            {"CELERY_BROKER_URL": AMQPS, "PLATFORM_BROKER_TLS_CA": "{missing}"},
            "PLATFORM_BROKER_TLS_CA: no such file '{missing}'",
            id="a CA file that does not exist",
        ),
    ],
)
def test_a_tls_setting_that_cannot_work_stops_loading_with_one_line_naming_it(
    authority: Authority, tmp_path: Path, environ: dict[str, str], expected: str
) -> None:
    (tmp_path / "not.pem").write_text("hello\n")
    files = {
        "ca": authority.ca,
        "client_cert": authority.client_cert,
        "client_key": authority.client_key,
        "server_key": authority.server_key,
        "not_pem": tmp_path / "not.pem",
        "missing": tmp_path / "missing.pem",
    }
    filled = {name: value.format(**files) for name, value in environ.items()}

    with pytest.raises(SettingsError) as raised:
        load_settings(filled)

    message = str(raised.value)
    assert expected.format(**files) in message
    assert "\n" not in message
    assert "s3cret" not in message


def test_an_encrypted_key_is_refused_at_load_without_asking_for_a_passphrase(
    authority: Authority, tmp_path: Path
) -> None:
    import subprocess

    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "ec", "-in", str(authority.client_key), "-out", str(encrypted), "-aes256",
         "-passout", "pass:secret"],
        check=True, capture_output=True,
    )  # fmt: skip
    environ = tls_env(authority, PLATFORM_BROKER_TLS_KEY=str(encrypted))

    with pytest.raises(SettingsError, match="is encrypted"):
        load_settings(environ)


def test_kombu_connections_of_the_tools_carry_a_copy_of_the_options(authority: Authority) -> None:
    options = broker_ssl_options(load_settings(tls_env(authority)))
    connection = kombu_connection(AMQPS, 2.0, options)

    assert connection.ssl == options
    assert connection.ssl is not options
    assert connection.transport_cls == "amqps"


def test_raw_connections_check_each_node_against_its_own_host_name() -> None:
    options = {"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": "node1.example"}  # kombu wrote node 1's

    second = node_ssl_options(options, Connection("amqps://u:p@node2.example:5671//"))
    plain = node_ssl_options(None, Connection("amqp://u:p@node2.example//"))
    scheme_only = node_ssl_options(None, Connection("amqps://u:p@node3.example//"))

    assert second == {"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": "node2.example"}
    assert options["server_hostname"] == "node1.example"
    assert plain is False
    assert scheme_only == {"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": "node3.example"}


def test_https_management_is_verified_with_the_brokers_ca_and_http_needs_no_context(
    authority: Authority,
) -> None:
    https = load_settings(tls_env(authority, PLATFORM_MANAGEMENT_URL="https://u:p@localhost:15701/api/"))
    http = load_settings(tls_env(authority))

    context = https_context(https)

    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any("rabbit-platform test CA" in str(ca.get("subject")) for ca in context.get_ca_certs())
    assert https_context(http) is None


def test_a_rejected_certificate_is_described_in_one_line_naming_the_setting() -> None:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "unable to get local issuer certificate"
    wrapped = RuntimeError("connection failed")
    wrapped.__cause__ = error

    line = describe_connect_error(wrapped)

    assert line == (
        "TLS: the broker's certificate was not accepted (unable to get local issuer certificate); "
        "check PLATFORM_BROKER_TLS_CA and the host name in the URL"
    )
