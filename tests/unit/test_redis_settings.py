"""REDIS_CLUSTER, REDIS_SENTINELS, REDIS_SENTINEL_MASTER: parsing, conflicts, and the log line."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.settings import Settings, load_settings
from core.storage.connection import describe_redis


@pytest.fixture(autouse=True)
def no_outside_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Settings read the environment and ./.env: run each test with neither."""
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def settings_from(monkeypatch: pytest.MonkeyPatch, **variables: str) -> Settings:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_a_single_redis_is_the_default():
    settings = load_settings()
    assert settings.redis_topology == "single"
    assert not settings.redis_cluster
    assert settings.redis_sentinels == ()


@pytest.mark.parametrize(
    "variables",
    [
        {"REDIS_URL": "redis+cluster://:pw@node1.example:7000"},
        {"REDIS_URL": "rediss+cluster://node1.example:7000/0"},
        {"REDIS_CLUSTER": "true", "REDIS_URL": "redis://node1.example:7000"},
        {"REDIS_CLUSTER": "1", "REDIS_HOST": "node1.example", "REDIS_PORT": "7000"},
    ],
)
def test_a_cluster_is_named_by_its_url_scheme_or_by_redis_cluster(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
):
    settings = settings_from(monkeypatch, **variables)
    assert settings.redis_topology == "cluster"
    assert settings.redis_cluster
    assert settings.redis_is_configured


def test_sentinels_are_a_comma_separated_list_of_host_and_port(monkeypatch: pytest.MonkeyPatch):
    settings = settings_from(
        monkeypatch,
        REDIS_SENTINELS=" s1.example:26380, [::1]:26381 ,s3.example,",
        REDIS_SENTINEL_MASTER="chatbridge",
    )
    assert settings.redis_topology == "sentinel"
    assert settings.redis_sentinels == (
        ("s1.example", 26380),
        ("::1", 26381),
        ("s3.example", 26379),
    )
    assert settings.redis_sentinel_master == "chatbridge"
    assert settings.redis_is_configured


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"REDIS_CLUSTER": "maybe", "REDIS_HOST": "h"}, "REDIS_CLUSTER"),
        ({"REDIS_CLUSTER": "true"}, "REDIS_CLUSTER"),  # which cluster?
        ({"REDIS_CLUSTER": "true", "REDIS_URL": "unix:///run/redis.sock"}, "REDIS_CLUSTER"),
        ({"REDIS_CLUSTER": "true", "REDIS_HOST": "h", "REDIS_DB": "2"}, "REDIS_CLUSTER"),
        ({"REDIS_CLUSTER": "true", "REDIS_URL": "redis://h:7000/3"}, "REDIS_CLUSTER"),
        ({"REDIS_URL": "redis+cluster://h:7000/3"}, "REDIS_URL"),
        ({"REDIS_URL": "redis+sentinel://h:26379"}, "REDIS_URL"),
        ({"REDIS_SENTINELS": "s1:26379"}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINEL_MASTER": "chatbridge"}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINELS": "s1:port", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "s1:0", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "s1:26379/x", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "u:p@s1:26379", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        (
            {"REDIS_SENTINELS": "s1:26379", "REDIS_SENTINEL_MASTER": "m", "REDIS_HOST": "h"},
            "REDIS_SENTINELS",
        ),
        (
            {"REDIS_SENTINELS": "s1:26379", "REDIS_SENTINEL_MASTER": "m", "REDIS_URL": "redis://h"},
            "REDIS_SENTINELS",
        ),
    ],
)
def test_a_bad_or_conflicting_topology_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value).startswith(f"{named}: "), str(error.value)
    assert "\n" not in str(error.value)


def test_sentinel_and_cluster_together_are_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("REDIS_SENTINELS", "s1:26379")
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "m")
    with pytest.raises(ConfigError) as error:
        load_settings(redis_cluster=True, redis_sentinels="s1:26379")
    assert "REDIS_CLUSTER" in str(error.value)


CLUSTER_BY_HOST = {"REDIS_CLUSTER": "true", "REDIS_HOST": "n1", "REDIS_PORT": "7000"}
SENTINELS = {"REDIS_SENTINELS": "s1:26379,s2:26380", "REDIS_SENTINEL_MASTER": "cb"}


@pytest.mark.parametrize(
    ("variables", "shown"),
    [
        ({"REDIS_URL": "redis+cluster://:hunter22@n1:7000"}, "redis+cluster://n1:7000"),
        (
            {"REDIS_CLUSTER": "true", "REDIS_URL": "rediss://:hunter22@n1:7000"},
            "rediss+cluster://n1:7000",
        ),
        ({**CLUSTER_BY_HOST, "REDIS_PASSWORD": "hunter22"}, "redis+cluster://n1:7000"),
        (
            {**SENTINELS, "REDIS_PASSWORD": "hunter22", "REDIS_DB": "1"},
            "sentinel://s1:26379,s2:26380/cb/1",
        ),
    ],
)
def test_the_log_line_says_which_topology_and_never_the_password(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], shown: str
):
    assert describe_redis(settings_from(monkeypatch, **variables)) == shown
