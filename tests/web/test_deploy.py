"""The dashboard in the shipped deployments: compose publishes it on the host's loopback only, with the
explicit no-token setting for exactly that case; the settings accept what the units document."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoresearch.ops.config import load_settings
from tests.ops.test_compose import compose_config


def test_compose_publishes_the_dashboard_on_the_hosts_loopback_only(tmp_path: Path) -> None:
    services = compose_config(tmp_path)["services"]
    for name in ("autoresearch", "autoresearch-gpu"):
        svc = services[name]
        assert svc["environment"]["AUTORESEARCH_HTTP__LISTEN"] == "0.0.0.0:8765"
        assert svc["environment"]["AUTORESEARCH_HTTP__CONTAINER_PUBLISHED_ON_LOOPBACK"] == "true"
        assert [str(p).split(":")[0] for p in svc["ports"]] == ["127.0.0.1"], svc["ports"]
    port = compose_config(tmp_path, AUTORESEARCH_HTTP_PORT="9999")["services"]["autoresearch"]["ports"]
    assert port == ["127.0.0.1:9999:8765/tcp"]


def test_the_http_settings_load_from_toml_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "autoresearch.toml").write_text('[http]\nlisten = "127.0.0.1:9000"\ntoken_file = "/etc/t"\n')
    settings = load_settings(tmp_path)
    assert settings.http.listen == "127.0.0.1:9000" and str(settings.http.token_file) == "/etc/t"
    monkeypatch.setenv("AUTORESEARCH_HTTP__CONTAINER_PUBLISHED_ON_LOOPBACK", "true")
    assert load_settings(tmp_path).http.container_published_on_loopback is True
