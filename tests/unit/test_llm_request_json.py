"""A chat request's body (core/llm/wire.py, request_json): the messages a turn built, and those
the store encoded already (EncodedMessages), go out as one JSON document, the same one
httpx would have written for `json=` from plain messages."""

from __future__ import annotations

import json

from core.llm.wire import ChatMessage, EncodedMessages, request_json

SYSTEM = ChatMessage("system", "Be brief.")
PICTURE = ChatMessage(
    "user",
    (
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
    ),
)
STORED = [("user", 'say "hi" \\ olá 😀'), ("assistant", "hi\n/there")]
BODY = {"model": "test/model", "stream": True, "usage": {"include": True}}


def encoded(messages: list[tuple[str, str]]) -> str:
    # As begin_turn.lua writes them: cjson escapes '/' too, which JSON allows.
    return ",".join(
        json.dumps({"role": role, "content": text}, separators=(",", ":")).replace("/", "\\/")
        for role, text in messages
    )


def as_httpx_sends(body: dict[str, object], messages: list[ChatMessage]) -> dict[str, object]:
    plain = [
        {"role": m.role, "content": m.content if isinstance(m.content, str) else list(m.content)}
        for m in messages
    ]
    return {"messages": plain, **body}


def test_plain_messages_make_the_body_httpx_would_send():
    body = json.loads(request_json(BODY, [SYSTEM, PICTURE]))
    assert body == as_httpx_sends(BODY, [SYSTEM, PICTURE])


def test_encoded_messages_go_in_after_the_head_as_they_are():
    messages = EncodedMessages([SYSTEM], encoded(STORED))
    raw = request_json(BODY, messages)
    assert encoded(STORED).encode() in raw  # not decoded and written again
    plain = [SYSTEM, *(ChatMessage(role, text) for role, text in STORED)]
    assert json.loads(raw) == as_httpx_sends(BODY, plain)


def test_encoded_messages_read_as_a_sequence_are_decoded_once():
    messages = EncodedMessages([SYSTEM], encoded(STORED))
    assert list(messages) == [SYSTEM, *(ChatMessage(role, text) for role, text in STORED)]
    assert len(messages) == 3
    assert messages[-1] == ChatMessage("assistant", "hi\n/there")
    assert messages._messages is messages._messages  # cached


def test_a_head_alone_or_an_encoded_part_alone_make_a_valid_body():
    assert json.loads(request_json(BODY, EncodedMessages([], encoded(STORED))))["messages"] == [
        {"role": role, "content": text} for role, text in STORED
    ]
    assert json.loads(request_json(BODY, EncodedMessages([SYSTEM], "")))["messages"] == [
        {"role": "system", "content": "Be brief."}
    ]
    assert json.loads(request_json({}, [SYSTEM])) == {"messages": [dict(SYSTEM._asdict())]}
