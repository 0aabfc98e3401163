"""Who may talk to a chat front, and the user id and log context that name them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import structlog
from structlog.testing import capture_logs

from bots.chatfront.access import AllowList, Platform

DISCORD = Platform("discord")
TELEGRAM = Platform("telegram")


@dataclass(frozen=True)
class Role:
    id: int
    name: str


MODERATORS = Role(500, "Moderators")
GUESTS = Role(501, "Guests")


@pytest.fixture
def clean_log_context() -> Iterator[None]:
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()


def refusals(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [entry for entry in logs if str(entry["event"]).endswith(".refused_user")]


def test_an_empty_allow_list_lets_everyone_in_and_logs_no_refusal():
    allowed = AllowList(DISCORD, users=[], roles=[])

    with capture_logs() as logs:
        assert allowed.lets_everyone_in
        assert allowed.admits(42, "anyone")
        assert allowed.admits(43, None)

    assert refusals(logs) == []


def test_a_user_listed_by_id_is_admitted_and_another_id_is_refused_and_logged():
    allowed = AllowList(TELEGRAM, users=["42"])

    with capture_logs() as logs:
        assert allowed.admits(42, None)
        assert not allowed.admits(43, None)

    assert refusals(logs) == [
        {"event": "telegram.refused_user", "user": "telegram:43", "log_level": "info"}
    ]


def test_an_id_must_match_whole_not_as_part_of_a_longer_or_shorter_one():
    allowed = AllowList(TELEGRAM, users=["42"])

    assert not allowed.admits(4, None)
    assert not allowed.admits(420, None)


def test_a_username_matches_whatever_its_case_on_either_side():
    allowed = AllowList(TELEGRAM, users=["Alice"])

    assert allowed.admits(1, "alice")
    assert allowed.admits(2, "ALICE")
    assert not allowed.admits(3, "alicia")


def test_a_user_without_a_username_is_refused_by_a_list_of_usernames():
    allowed = AllowList(TELEGRAM, users=["alice"])

    assert not allowed.admits(1, None)


def test_a_role_listed_by_id_or_by_name_in_any_case_lets_its_members_in():
    by_id = AllowList(DISCORD, users=[], roles=["500"])
    by_name = AllowList(DISCORD, users=[], roles=["MODERATORS"])

    assert not by_id.lets_everyone_in
    assert by_id.admits(1, "bob", roles=[GUESTS, MODERATORS])
    assert by_name.admits(1, "bob", roles=[MODERATORS])
    assert not by_name.admits(1, "bob", roles=[GUESTS])


def test_a_list_of_roles_alone_refuses_a_user_with_no_roles_as_in_a_dm():
    allowed = AllowList(DISCORD, users=[], roles=["moderators"])

    with capture_logs() as logs:
        assert not allowed.admits(7, "bob")

    assert refusals(logs) == [
        {"event": "discord.refused_user", "user": "discord:7", "log_level": "info"}
    ]


def test_a_user_entry_does_not_match_a_role_and_a_role_entry_does_not_match_a_user():
    allowed = AllowList(DISCORD, users=["moderators", "501"], roles=["bob"])

    assert not allowed.admits(1, "carol", roles=[MODERATORS, GUESTS])
    assert not allowed.admits(2, "bob")


def test_a_user_listed_or_holding_a_listed_role_is_admitted_when_both_lists_are_set():
    allowed = AllowList(DISCORD, users=["alice"], roles=["moderators"])

    assert allowed.admits(1, "alice")
    assert allowed.admits(2, "bob", roles=[MODERATORS])
    assert not allowed.admits(3, "carol", roles=[GUESTS])


def test_the_user_id_carries_the_platform_so_equal_numbers_are_different_users():
    assert TELEGRAM.user_id(42) == "telegram:42"
    assert DISCORD.user_id(42) == "discord:42"


@pytest.mark.usefixtures("clean_log_context")
def test_binding_names_the_platform_the_user_and_the_chat_in_every_later_log_line():
    DISCORD.bind(42, 7)

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        structlog.get_logger().info("something")

    assert logs[0]["platform"] == "discord"
    assert logs[0]["user"] == "discord:42"
    assert logs[0]["chat"] == 7
