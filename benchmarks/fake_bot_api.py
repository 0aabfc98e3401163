"""The strict fake Bot API (tests/fakes/telegram_server.py) in a child process, for
front_overhead.py: its request parsing would otherwise be charged to the front measured.

The parent writes requests on the child's stdin (updates to make, chats to refuse drafts,
stats); the child answers on stdout, and also reports every bot message it accepts, with its
`time.monotonic()` (the system-wide monotonic clock on Linux, so comparable with the parent's)
and whether it is a preview, the final answer, or something else; and the first draft of each
answer (the rest would only cost the parent's CPU, which is what is measured).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telegram import Update

from benchmarks.harness import REPLY
from bots.telegram.front import TelegramApp
from bots.telegram.render import to_telegram_html

ROOT = Path(__file__).resolve().parents[1]
BOT_TOKEN = "123456:TEST-fake-telegram-token-abcdefghijk"  # noqa: S105  (the fake's, no secret)
QUESTION = "How do tides work?"
REPLY_HTML = to_telegram_html(REPLY)  # what the baseline sends, and what we end up showing
ANSWER_TIMEOUT = 600.0  # seconds one answer may take before the run is given up
PIPE_LIMIT = 1 << 26  # one line from the fake carries every update of a side


def _new_future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


@dataclass
class Answer:
    """One update in flight: when it was put on the queue, when the bot's messages came."""

    sent_at: float
    first_at: float = 0.0
    final_at: float = 0.0
    done: asyncio.Future[None] = field(default_factory=_new_future)


@dataclass(frozen=True)
class Stats:
    requests: int  # Bot API calls the fake has taken so far
    cpu: float  # the fake process's CPU seconds so far
    at: float  # its time.monotonic()
    by_method: dict[str, int]  # the requests, per Bot API method


class FakeBotApi:
    """Our end of the child: asks it for updates and stats; hears of every bot message."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        if process.stdin is None or process.stdout is None:
            raise ValueError("the fake's process needs its stdin and stdout piped")
        self._process = process
        self._stdin, self._stdout = process.stdin, process.stdout
        self.base_url = ""
        self._replies: asyncio.Queue[Any] = asyncio.Queue()
        self._waiting: dict[int, Answer] = {}
        self._reader: asyncio.Task[None] | None = None

    async def begin(self) -> None:
        self.base_url = str(json.loads(await self._stdout.readline())["reply"])
        self._reader = asyncio.create_task(self._read())

    async def end(self) -> None:
        self._stdin.close()  # the child closes the fake and exits
        await self._process.wait()
        if self._reader is not None:
            await self._reader

    async def updates(self, chat_ids: list[int], per_chat: int) -> dict[int, list[dict[str, Any]]]:
        """`per_chat` text messages from each chat's user, known to the fake, as Update JSON."""
        listed = await self._ask({"updates": chat_ids, "per_chat": per_chat, "text": QUESTION})
        return dict(zip(chat_ids, listed, strict=True))

    async def stats(self) -> Stats:
        requests, cpu, at, by_method = await self._ask({"stats": True})
        return Stats(requests, cpu, at, by_method)

    async def refuse_drafts(self, chat_ids: list[int]) -> None:
        """The fake refuses drafts to these chats from now on, as Telegram may (a 400)."""
        await self._ask({"refuse_drafts": chat_ids})

    async def set_final_text(self, text: str) -> None:
        """The answer's text from now on, as the model streams it (the instant reply until then)."""
        await self._ask({"final_text": text})

    def expect(self, chat_id: int, sent_at: float) -> Answer:
        """An answer to an update sent some other way (the webhook of a front in another
        process), to `chat_id`, at `sent_at`."""
        answer = Answer(sent_at)
        self._waiting[chat_id] = answer
        return answer

    async def converse(self, app: TelegramApp, updates: list[dict[str, Any]]) -> list[Answer]:
        """One user: each message once the answer to the one before is final."""
        answers = []
        for data in updates:
            answer = Answer(time.monotonic())
            self._waiting[data["message"]["chat"]["id"]] = answer
            await app.update_queue.put(Update.de_json(data, app.bot))
            await asyncio.wait_for(answer.done, ANSWER_TIMEOUT)
            answers.append(answer)
        return answers

    async def _ask(self, request: dict[str, Any]) -> Any:
        self._stdin.write(json.dumps(request).encode() + b"\n")
        await self._stdin.drain()
        return await self._replies.get()

    async def _read(self) -> None:
        while line := await self._stdout.readline():
            said = json.loads(line)
            if "reply" in said:
                self._replies.put_nowait(said["reply"])
            else:
                self._heard(*said["bot"])

    def _heard(self, chat_id: int, at: float, kind: str, shown: str) -> None:
        answer = self._waiting.get(chat_id)
        if answer is None or answer.done.done():
            return
        if kind == "other":
            answer.done.set_exception(RuntimeError(f"the bot said something else: {shown!r}"))
            return
        answer.first_at = answer.first_at or at
        if kind == "final":
            answer.final_at = at
            answer.done.set_result(None)


@contextlib.asynccontextmanager
async def fake_bot_api() -> AsyncIterator[FakeBotApi]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from benchmarks.fake_bot_api import serve_fake; serve_fake()",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
        limit=PIPE_LIMIT,
    )
    fake = FakeBotApi(process)
    try:
        await fake.begin()
        yield fake
    finally:
        await fake.end()


def serve_fake() -> None:
    """The child: the fake Bot API; requests on stdin, replies and bot messages on stdout."""
    asyncio.run(_serve_fake())


async def _serve_fake() -> None:
    # The tests' fakes, imported by the child only, and out of mypy's sight: the project's
    # type check covers core, bots and benchmarks, not tests.
    fake_telegram: Any = importlib.import_module("tests.fakes.telegram_server").FakeTelegram
    parse_html = importlib.import_module("tests.fakes.telegram_html").parse_html

    final_text = parse_html(REPLY_HTML).text.strip()  # what a user reads of the whole reply
    finals = {"text": final_text}  # set_final_text changes it

    def say(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    class ReportingFake(fake_telegram):  # type: ignore[misc]
        """Tells of each message the bot sends, of each edit that completes the answer, and of
        the first draft of each answer."""

        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            self.drafting: set[int] = set()  # chats whose answer's first draft was told

        def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
            return self._told(super()._send_message(params), is_edit=False)

        def _send_message_draft(self, params: dict[str, Any]) -> bool:
            taken = super()._send_message_draft(params)
            chat_id = int(params["chat_id"])
            if chat_id not in self.drafting:
                self.drafting.add(chat_id)
                say({"bot": [chat_id, time.monotonic(), "draft", ""]})
            return bool(taken)

        def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
            return self._told(super()._edit_message_text(params), is_edit=True)

        def _told(self, message: dict[str, Any], *, is_edit: bool) -> dict[str, Any]:
            shown = str(message.get("text", "")).strip()
            # A reply may end with a notice under the answer (older messages no longer sent,
            # once per session): still the whole answer.
            is_final = shown.startswith(finals["text"]) and not shown.endswith("…")
            kind = "final" if is_final else "preview" if shown.endswith("…") else "other"
            if kind != "preview" or not is_edit:
                say({"bot": [message["chat"]["id"], time.monotonic(), kind, shown]})
            if kind == "final":
                self.drafting.discard(message["chat"]["id"])  # the next answer's draft is told
            return message

    fake = ReportingFake(token=BOT_TOKEN)
    await fake.start()
    say({"reply": fake.base_url})
    try:
        while line := await asyncio.to_thread(sys.stdin.readline):
            request = json.loads(line)
            if "updates" in request:
                text, per_chat = request["text"], request["per_chat"]
                said = [
                    [fake.user_says(text, user_id=chat_id) for _ in range(per_chat)]
                    for chat_id in request["updates"]
                ]
                say({"reply": said})
            elif "final_text" in request:
                finals["text"] = parse_html(to_telegram_html(request["final_text"])).text.strip()
                say({"reply": True})
            elif "refuse_drafts" in request:
                for chat_id in request["refuse_drafts"]:
                    fake.refuse_drafts(chat_id=chat_id)
                say({"reply": True})
            elif "stats" in request:
                by_method = Counter(call.method for call in fake.calls)
                stats = [len(fake.calls), time.process_time(), time.monotonic(), by_method]
                say({"reply": stats})
    finally:
        await fake.close()
