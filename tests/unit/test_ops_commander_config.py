"""`make commander`'s configuration: the Redis connection it hands Redis Commander, its own
REDIS_COMMANDER_* settings, and the environment (never the command line) that carries them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bots.ops.commander_config import (
    child_environment,
    configured_target,
    load_commander_settings,
    socket_target,
)
from core.errors import ConfigError
from core.settings import Settings, load_settings

COMMANDER_VARIABLES = ("REDIS_COMMANDER_USER", "REDIS_COMMANDER_PASSWORD", "REDIS_COMMANDER_PORT")


@pytest.fixture(autouse=True)
def no_outside_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings read the environment and ./.env: run each test with neither."""
    monkeypatch.chdir(tmp_path)
    for name in (*(field.upper() for field in Settings.model_fields), *COMMANDER_VARIABLES):
        monkeypatch.delenv(name, raising=False)


def target_for(monkeypatch: pytest.MonkeyPatch, **variables: str) -> dict[str, object]:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return configured_target(load_settings()).connection


def test_a_redis_url_gives_its_host_port_database_and_password(monkeypatch: pytest.MonkeyPatch):
    connection = target_for(monkeypatch, REDIS_URL="redis://:p%40ss@cache.example:6390/3")
    assert connection == {
        "label": "chatbridge",
        "host": "cache.example",
        "port": 6390,
        "dbIndex": 3,
        "password": "p@ss",
    }


def test_a_url_without_password_does_not_take_redis_password(monkeypatch: pytest.MonkeyPatch):
    # As for the service's own client: the URL says everything.
    connection = target_for(
        monkeypatch, REDIS_URL="redis://cache.example:6390/0", REDIS_PASSWORD="unused"
    )
    assert "password" not in connection


def test_the_redis_host_group_gives_host_port_database_and_password(
    monkeypatch: pytest.MonkeyPatch,
):
    connection = target_for(
        monkeypatch,
        REDIS_HOST="cache.example",
        REDIS_PORT="6391",
        REDIS_DB="2",
        REDIS_PASSWORD="secret",
    )
    assert connection == {
        "label": "chatbridge",
        "host": "cache.example",
        "port": 6391,
        "dbIndex": 2,
        "password": "secret",
    }


def test_rediss_asks_for_tls_and_keeps_the_user(monkeypatch: pytest.MonkeyPatch):
    connection = target_for(monkeypatch, REDIS_URL="rediss://ops:pw@cache.example:6380")
    assert connection["tls"] is True
    assert connection["username"] == "ops"
    assert connection["port"] == 6380


def test_a_unix_url_gives_the_socket_path(monkeypatch: pytest.MonkeyPatch):
    connection = target_for(monkeypatch, REDIS_URL="unix:///run/redis/redis.sock?db=4")
    assert connection == {"label": "chatbridge", "path": "/run/redis/redis.sock", "dbIndex": 4}


@pytest.mark.parametrize(
    "variables",
    [
        {"REDIS_URL": "redis+cluster://:pw@node1.example:7000"},
        {
            "REDIS_CLUSTER": "true",
            "REDIS_HOST": "node1.example",
            "REDIS_PORT": "7000",
            "REDIS_PASSWORD": "pw",
        },
    ],
)
def test_a_cluster_gives_its_node_as_a_cluster_connection(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
):
    connection = target_for(monkeypatch, **variables)
    assert connection == {
        "label": "chatbridge",
        "clusters": [{"host": "node1.example", "port": 7000}],
        "isCluster": True,
        "dbIndex": 0,
        "password": "pw",
    }


def test_a_sentinel_set_gives_the_sentinels_the_master_name_and_its_password(
    monkeypatch: pytest.MonkeyPatch,
):
    connection = target_for(
        monkeypatch,
        REDIS_SENTINELS="s1.example:26380,s2.example",
        REDIS_SENTINEL_MASTER="main",
        REDIS_PASSWORD="pw",
        REDIS_DB="1",
    )
    assert connection == {
        "label": "chatbridge",
        "sentinels": [
            {"host": "s1.example", "port": 26380},
            {"host": "s2.example", "port": 26379},
        ],
        "sentinelName": "main",
        "password": "pw",
        "dbIndex": 1,
    }


def test_the_description_never_holds_the_password(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2-secret@cache.example:6390/0")
    assert "hunter2-secret" not in configured_target(load_settings()).description


def test_the_defaults_are_admin_on_port_8081_with_no_password():
    settings = load_commander_settings()
    assert (settings.user, settings.port, settings.password) == ("admin", 8081, None)


def test_the_variables_are_read_from_dot_env(tmp_path: Path):
    (tmp_path / ".env").write_text(
        "REDIS_COMMANDER_USER=ops\nREDIS_COMMANDER_PASSWORD=pw\nREDIS_COMMANDER_PORT=9000\n"
    )
    settings = load_commander_settings()
    assert settings.user == "ops"
    assert settings.port == 9000
    assert settings.password is not None
    assert settings.password.get_secret_value() == "pw"


@pytest.mark.parametrize("port", ["1", "65535"])
def test_a_port_from_1_to_65535_is_accepted(monkeypatch: pytest.MonkeyPatch, port: str):
    monkeypatch.setenv("REDIS_COMMANDER_PORT", port)
    assert load_commander_settings().port == int(port)


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_another_port_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, port: str):
    monkeypatch.setenv("REDIS_COMMANDER_PORT", port)
    with pytest.raises(ConfigError, match=r"^REDIS_COMMANDER_PORT: "):
        load_commander_settings()


def test_the_service_settings_ignore_the_commander_variables(monkeypatch: pytest.MonkeyPatch):
    for name in COMMANDER_VARIABLES:
        monkeypatch.setenv(name, "9000")
    assert load_settings().http_port == 3000


def test_the_environment_carries_the_connection_and_the_login(monkeypatch: pytest.MonkeyPatch):
    target = socket_target(Path("/srv/chatbridge/data/redis.sock"))
    env = child_environment(target, 8082, "ops", "web-secret")
    config = json.loads(env["NODE_CONFIG"])
    assert config["connections"] == [target.connection]
    assert config["server"] == {"address": "127.0.0.1", "port": 8082}
    assert config["noSave"] is True  # else Redis Commander writes the passwords to a file
    assert (env["HTTP_USER"], env["HTTP_PASSWORD"]) == ("ops", "web-secret")


def test_variables_redis_commander_would_read_are_not_inherited(monkeypatch: pytest.MonkeyPatch):
    # node-config maps these names over NODE_CONFIG: PORT=3000 would move Redis Commander.
    for name, value in {"PORT": "3000", "ADDRESS": "::", "READ_ONLY": "true"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", "/usr/bin")
    env = child_environment(socket_target(Path("/srv/redis.sock")), 8081, "admin", "pw")
    assert not {"PORT", "ADDRESS", "READ_ONLY"} & env.keys()
    assert env["PATH"] == "/usr/bin"
