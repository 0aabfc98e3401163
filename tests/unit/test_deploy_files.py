"""The shipped Redis and compose settings keep Redis and its tools behind passwords."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = re.compile(r"^\$\{(\w+):\?[^}]+\}$")  # compose refuses to start without the variable


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def directives(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.strip().partition(" ")
            found[name] = value
    return found


def test_the_shipped_redis_conf_keeps_protected_mode_and_listens_only_on_loopback():
    conf = directives((ROOT / "redis.conf").read_text(encoding="utf-8"))
    assert conf["protected-mode"] == "yes"
    assert set(conf["bind"].split()) <= {"127.0.0.1", "-::1", "::1"}
    assert "requirepass" not in conf  # the password comes from the environment, never the file


def test_compose_runs_redis_with_a_password_it_requires():
    redis = compose()["services"]["redis"]
    assert REQUIRED.match(redis["environment"]["REDIS_PASSWORD"])
    command = " ".join(redis["command"])
    assert '--requirepass "$$REDIS_PASSWORD"' in command
    assert all(port.startswith("127.0.0.1:") for port in redis["ports"])


def test_redis_commander_and_the_app_require_their_passwords():
    services = compose()["services"]
    commander = services["redis-commander"]["environment"]
    assert REQUIRED.match(commander["HTTP_PASSWORD"])
    assert REQUIRED.match(commander["REDIS_PASSWORD"])
    assert all(port.startswith("127.0.0.1:") for port in services["redis-commander"]["ports"])
    app = services["app"]["environment"]
    assert REQUIRED.match(app["REDIS_PASSWORD"])
    assert REQUIRED.match(app["API_TOKEN"])  # the API listens on 0.0.0.0 there
