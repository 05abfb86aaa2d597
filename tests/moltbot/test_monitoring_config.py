"""`[monitoring]` in moltbot.toml and the `services` parameter: defaults, checks, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from moltbot.config.monitoring import (
    DEFAULT_MAX_PARALLEL,
    ServiceCheck,
    load_monitoring,
    services_from_parameter,
)
from moltbot.config.project import ProjectConfig
from moltbot.errors import InputError


def config(tmp_path: Path, text: str) -> ProjectConfig:
    path = tmp_path / "moltbot.toml"
    path.write_text(text, encoding="utf-8")
    return ProjectConfig.load(path)


def test_no_table_gives_the_defaults_and_no_services(tmp_path: Path) -> None:
    loaded = load_monitoring(config(tmp_path, "[routes]\n"))

    assert loaded.max_parallel == DEFAULT_MAX_PARALLEL == 20
    assert loaded.services == {}


def test_a_full_table_is_read(tmp_path: Path) -> None:
    loaded = load_monitoring(
        config(
            tmp_path,
            """
[monitoring]
max_parallel = 5

[monitoring.services.api]
url = "https://api.example.com/health"

[monitoring.services."결제-api"]
url = "http://127.0.0.1:8765/targets/pay"
expected_status = [200, 204]
latency_ms = 800
contains = "ok"
timeout_seconds = 2.5
method = "post"
headers_block = "pay-headers"
failures_to_down = 2
""",
        )
    )

    assert loaded.max_parallel == 5
    assert loaded.services["api"] == ServiceCheck(url="https://api.example.com/health")
    api = loaded.services["api"]
    assert (api.expected_status, api.method, api.timeout_seconds, api.failures_to_down) == (
        (200,),
        "GET",
        10.0,
        3,
    )
    pay = loaded.services["결제-api"]
    assert pay.expected_status == (200, 204)
    assert (pay.latency_ms, pay.contains, pay.timeout_seconds) == (800, "ok", 2.5)
    assert (pay.method, pay.headers_block, pay.failures_to_down) == ("POST", "pay-headers", 2)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'url = "ftp://files.example.com/x?token=abc123"',
            "url: must start with http:// or https://",
        ),
        ('url = "https:///nohost"', "url: has no host"),
        ('url = "http://x/"\nexpected_status = 700', "expected_status: must be a status code"),
        ('url = "http://x/"\nexpected_status = []', "expected_status: lists no status code"),
        ('url = "http://x/"\nmethod = "DELETE"', "method: Input should be 'GET', 'HEAD' or 'POST'"),
        ('url = "http://x/"\nfailures_to_down = 0', "failures_to_down: Input should be greater"),
        ('url = "http://x/"\nlatency_ms = -1', "latency_ms: Input should be greater than 0"),
        ('url = "http://x/"\ntimeout = 3', "timeout: unknown key"),
        ('method = "GET"', "url: missing"),
        ('url = "http://x/"\nmethod = "HEAD"\ncontains = "ok"', "contains needs a body"),
    ],
)
def test_a_bad_service_is_one_line_naming_the_line_table_and_key(
    tmp_path: Path, body: str, message: str
) -> None:
    text = f"# monitoring\n\n[monitoring.services.api]\n{body}\n"

    with pytest.raises(InputError) as caught:
        load_monitoring(config(tmp_path, text))

    error = str(caught.value)
    assert "\n" not in error
    assert error.startswith("moltbot.toml line ")
    assert "[monitoring.services.api]" in error and message in error
    # The value itself is never quoted (a URL may carry a token).
    assert "abc123" not in error and "DELETE" not in error


def test_a_bad_line_number_points_at_the_key(tmp_path: Path) -> None:
    text = '[monitoring]\nmax_parallel = 0\n\n[monitoring.services.api]\nurl = "http://x/"\n'

    with pytest.raises(InputError, match=r"^moltbot.toml line 2: \[monitoring\] max_parallel: "):
        load_monitoring(config(tmp_path, text))


def test_a_bad_service_name_is_refused(tmp_path: Path) -> None:
    text = '[monitoring.services."a b"]\nurl = "http://x/"\n'

    with pytest.raises(InputError, match=r"service names are letters"):
        load_monitoring(config(tmp_path, text))


def test_the_parameter_has_the_same_shape_and_names_its_key() -> None:
    checks = services_from_parameter({"web": {"url": "http://127.0.0.1/w", "latency_ms": 300}})

    assert checks["web"].latency_ms == 300
    with pytest.raises(InputError, match=r"^services\['web'\].url: must start with http"):
        services_from_parameter({"web": {"url": "file:///etc/passwd"}})
    with pytest.raises(InputError, match=r"^services\['web'\]: Input should be"):
        services_from_parameter({"web": "http://x/"})
    with pytest.raises(InputError, match=r"^services must map service names"):
        services_from_parameter(["http://x/"])
