"""Files of a session over HTTP: message listings name them (`attachments`, with `kept`), and
GET /api/sessions/{sessionId}/attachments/{attachmentId} returns their bytes as stored, typed
as sniffed, to whoever may read the session."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from core.conversation import AttachmentKind, NewAttachment
from tests.e2e.http_app import (
    RunningApi,
    ServeApi,
    all_messages,
    assert_error,
    assert_message_shape,
    bearer,
)

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
