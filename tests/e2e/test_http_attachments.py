"""Files of a session over HTTP: message listings name them (`attachments`, with `kept`), and
GET /api/sessions/{sessionId}/attachments/{attachmentId} returns their bytes as stored, typed
as sniffed, to whoever may read the session."""

from __future__ import annotations

import base64
import time
from typing import Any

import jwt
import pytest

from core.conversation import AttachmentKind, NewAttachment
from tests.attachment_files import image_file, pdf_file, wav_file
from tests.e2e.http_app import (
    RunningApi,
    ServeApi,
    all_messages,
    assert_error,
    assert_message_shape,
    bearer,
)
from tests.fakes.openrouter_server import FakeOpenRouter

JWT_SECRET = "jwt-secret-of-the-http-attachment-tests-0123"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def token(user: str) -> dict[str, str]:
    claims = {"sub": user, "exp": int(time.time()) + 600}
    return bearer(jwt.encode(claims, JWT_SECRET, algorithm="HS256"))


async def picture_turn(api: RunningApi, user: str, data: bytes, name: str) -> str:
    """A turn with one image, through the core the API serves; the session's id."""
    image = NewAttachment(AttachmentKind.IMAGE, "image/png", name, data)
    async with api.services.chat.turn("look", user_id=user, attachments=[image]) as turn:
        async for _ in turn.deltas():
            pass
    return turn.session.id


@pytest.fixture
async def api(serve_api: ServeApi) -> RunningApi:
    return await serve_api(jwt_secret=JWT_SECRET, max_attachment_bytes_per_session=400)


async def test_a_listed_file_is_returned_as_stored_with_its_type_and_name(api: RunningApi) -> None:
    session_id = await picture_turn(api, "ana", PNG, "ünï café.png")

    listed = await all_messages(api.client, session_id, headers=token("ana"))
    question: dict[str, Any] = listed["messages"][0]
    assert_message_shape(question)
    [file] = question["attachments"]
    assert file == {"id": file["id"], "type": "image", "mediaType": "image/png",
                    "name": "ünï café.png", "size": len(PNG), "kept": True}  # fmt: skip

    response = await api.client.get(
        f"/api/sessions/{session_id}/attachments/{file['id']}", headers=token("ana")
    )
    assert response.status_code == 200
    assert response.content == PNG
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"_n_ caf_.png\"; filename*=UTF-8''%C3%BCn%C3%AF%20caf%C3%A9.png"
    )


async def test_nobody_else_reads_a_file_and_unknown_ids_are_404(api: RunningApi) -> None:
    session_id = await picture_turn(api, "ana", PNG, "mine.png")
    path = f"/api/sessions/{session_id}/attachments/1-1"
    assert (await api.client.get(path, headers=token("ana"))).status_code == 200

    assert_error(await api.client.get(path, headers=token("bob")), 404, "session_not_found")
    for other in ("1-2", "2-1", "99-1"):
        response = await api.client.get(
            f"/api/sessions/{session_id}/attachments/{other}", headers=token("ana")
        )
        assert_error(response, 404, "session_not_found")
    bad = await api.client.get(f"/api/sessions/{session_id}/attachments/x-1", headers=token("ana"))
    assert bad.status_code == 404
    assert (await api.client.get(path)).status_code == 401


async def test_a_file_dropped_for_newer_ones_is_listed_not_kept_and_gone(api: RunningApi) -> None:
    session_id = await picture_turn(api, "ana", b"a" * 300, "old.png")
    await picture_turn(api, "ana", b"b" * 300, "new.png")  # over 400: old.png goes

    listed = await all_messages(api.client, session_id, headers=token("ana"))
    files = [f for m in listed["messages"] for f in m["attachments"]]
    assert [(f["name"], f["kept"]) for f in files] == [("old.png", False), ("new.png", True)]
    old, new = files
    gone = await api.client.get(
        f"/api/sessions/{session_id}/attachments/{old['id']}", headers=token("ana")
    )
    assert_error(gone, 410, "attachment_gone")
    kept = await api.client.get(
        f"/api/sessions/{session_id}/attachments/{new['id']}", headers=token("ana")
    )
    assert kept.content == b"b" * 300


# --- sending files ------------------------------------------------------------------------


@pytest.fixture
async def roomy_api(serve_api: ServeApi) -> RunningApi:
    """The default attachment budget."""
    return await serve_api(jwt_secret=JWT_SECRET)


def attached(kind: str, data: bytes, name: str, media_type: str = "image/png") -> dict[str, str]:
    return {"type": kind, "mediaType": media_type, "name": name,
            "data": base64.b64encode(data).decode()}  # fmt: skip


async def test_a_photo_and_a_pdf_sent_with_a_message_reach_the_model(
    roomy_api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    api = roomy_api
    created = await api.client.post("/api/sessions", json={"userId": "ana"}, headers=token("ana"))
    session_id = created.json()["id"]
    body = {
        "sessionId": session_id,
        "message": "compare them",
        "attachments": [
            attached("image", image_file("PNG", size=(20, 10)), "p.png"),
            attached("document", pdf_file("Tides are long waves."), "t.pdf", "application/pdf"),
        ],
    }
    response = await api.client.post("/api/chat/session", json=body, headers=token("ana"))
    assert response.status_code == 200, response.text
    content = fake_openrouter.requests[-1].body["messages"][-1]["content"]
    assert content[0]["type"] == "text"
    assert content[0]["text"].startswith('compare them\n\nAttached file "t.pdf"')
    assert "Tides are long waves." in content[0]["text"]
    assert content[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    listed = await all_messages(api.client, session_id, headers=token("ana"))
    files = listed["messages"][0]["attachments"]
    assert [(f["type"], f["mediaType"], f["name"]) for f in files] == [
        ("image", "image/jpeg", "p.png"), ("document", "application/pdf", "t.pdf"),
    ]  # fmt: skip


async def test_a_voice_message_alone_becomes_its_transcript(
    roomy_api: RunningApi, fake_openrouter: FakeOpenRouter
) -> None:
    api = roomy_api
    fake_openrouter.transcriptions.text = "what time is high tide"
    body = {"userId": "ana", "initialMessage": "",
            "attachments": [attached("audio", wav_file(), "v.wav", "audio/wav")]}  # fmt: skip
    response = await api.client.post("/api/chat/session/start", json=body, headers=token("ana"))
    assert response.status_code == 201, response.text
    assert response.json()["reply"]["content"] == "echo: what time is high tide"


@pytest.mark.parametrize(
    ("attachments", "status", "code"),
    [
        ([], 422, "validation_error"),  # blank words and no file
        ([attached("image", b"not base64!", "x")], 422, "validation_error"),
        ([attached("document", image_file("PNG"), "x.pdf")], 422, "validation_error"),
        ([attached("image", b"\x00\x01\x02 what", "x.png")], 415, "invalid_attachment"),
        (
            [attached("image", image_file("PNG"), f"{n}.png") for n in range(5)],
            422,
            "too_many_attachments",
        ),
        (
            [attached("document", pdf_file(None), "scan.pdf", "application/pdf")],
            422,
            "document_has_no_text",
        ),
    ],
    ids=["nothing", "bad-base64", "type-says-otherwise", "unknown-bytes", "five", "scan"],
)
async def test_files_that_cannot_be_used_are_refused_and_nothing_is_stored(
    roomy_api: RunningApi,
    fake_openrouter: FakeOpenRouter,
    attachments: list[Any],
    status: int,
    code: str,
) -> None:
    api = roomy_api
    if attachments and attachments[0]["data"] == base64.b64encode(b"not base64!").decode():
        attachments = [{**attachments[0], "data": "not base64!"}]  # as sent: not base64 at all
    body = {"userId": "ana", "initialMessage": " ", "attachments": attachments}
    response = await api.client.post("/api/chat/session/start", json=body, headers=token("ana"))
    assert_error(response, status, code)
    listed = await api.client.get("/api/users/ana/sessions", headers=token("ana"))
    assert listed.json()["sessions"] == []
    assert fake_openrouter.requests == []


async def test_one_file_over_max_attachment_bytes_is_413(serve_api: ServeApi) -> None:
    api = await serve_api(jwt_secret=JWT_SECRET, max_attachment_bytes=1000)
    at_limit = b"a" * 999 + b"\n"
    for data, status in ((at_limit, 201), (at_limit + b"b", 413)):
        body = {"userId": "ana", "initialMessage": "read",
                "attachments": [attached("document", data, "a.txt", "text/plain")]}  # fmt: skip
        response = await api.client.post("/api/chat/session/start", json=body, headers=token("ana"))
        assert response.status_code == status, response.text


async def test_a_model_that_reads_no_images_gets_none_and_the_client_is_told(
    serve_api: ServeApi, fake_openrouter: FakeOpenRouter
) -> None:
    # The fake lists this model without image input, as OpenRouter's models list does.
    api = await serve_api(jwt_secret=JWT_SECRET, default_model="meta-llama/llama-3.1-8b-instruct")
    body = {"userId": "ana", "initialMessage": "what is it?",
            "attachments": [attached("image", image_file("PNG"), "p.png")]}  # fmt: skip

    response = await api.client.post("/api/chat/session/start", json=body, headers=token("ana"))

    message = assert_error(response, 422, "model_cannot_read_images")
    assert "meta-llama/llama-3.1-8b-instruct cannot read images" in message
    assert fake_openrouter.requests == []
    listed = await api.client.get("/api/users/ana/sessions", headers=token("ana"))
    assert listed.json()["sessions"] == []


async def test_a_session_over_its_budget_through_the_api_keeps_the_newest_file(
    serve_api: ServeApi, fake_openrouter: FakeOpenRouter
) -> None:
    api = await serve_api(jwt_secret=JWT_SECRET, max_attachment_bytes_per_session=3000)
    first = b"first file " * 200  # 2,200 bytes of text: a document, stored as sent
    second = b"second one " * 200
    body = {"userId": "ana", "initialMessage": "one",
            "attachments": [attached("document", first, "1.txt", "text/plain")]}  # fmt: skip
    started = await api.client.post("/api/chat/session/start", json=body, headers=token("ana"))
    session_id = started.json()["session"]["id"]
    body = {"sessionId": session_id, "message": "two",
            "attachments": [attached("document", second, "2.txt", "text/plain")]}  # fmt: skip
    assert (await api.client.post("/api/chat/session", json=body, headers=token("ana"))).is_success

    listed = await all_messages(api.client, session_id, headers=token("ana"))
    files = [f for m in listed["messages"] for f in m["attachments"]]
    assert [(f["name"], f["kept"]) for f in files] == [("1.txt", False), ("2.txt", True)]
