"""The terminal front: a REPL over the command layer, streaming answers as they arrive.

A document (`/export`) is written to the current directory, never over an existing file.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import structlog

from bots.chatfront.streaming import stream_turn
from core.commands import CommandHandler, FileReply, Reply, TurnReply, is_command, parse_number
from core.conversation import Message
from core.messages import text

USER_NAME_PATTERN = re.compile(r"^[\w.\-@]{1,64}$")
EXIT_WORDS = {"/quit", "/exit"}


def plain(markup: str) -> str:
    """Our light Markdown, as a terminal shows it: bold markers dropped."""
    return re.sub(r"\*([^*\n]+)\*", r"\1", markup)


class Terminal:
    """One user's conversation on stdin/stdout."""

    def __init__(
        self,
        commands: CommandHandler,
        user_name: str,
        locale: str,
        stdin: TextIO,
        stdout: TextIO,
        *,
        files_dir: Path | None = None,
    ) -> None:
        self._files_dir = files_dir if files_dir is not None else Path()
        self._commands = commands
        self._user_id = f"cli:{user_name}"
        self._locale = locale
        self._in = stdin
        self._out = stdout
        self._lines: asyncio.Queue[str] = asyncio.Queue()
        self._is_at_end = False
        # Lines typed at a choice prompt that were no choice, or while an answer was being
        # written: the next lines of the conversation.
        self._typed_ahead: collections.deque[str] = collections.deque()

    async def run(self) -> None:
        structlog.contextvars.bind_contextvars(platform="cli", user=self._user_id)
        self._start_reader()
        while (line := await self._next_line()) is not None:
            if line.strip() in EXIT_WORDS:
                break
            if line.strip():
                await self._answer(line.strip())
        self._write(text(self._locale, "goodbye") + "\n")

    async def _answer(self, message: str) -> None:
        outcome = await self._commands.handle(self._user_id, message, locale=self._locale)
        if isinstance(outcome, TurnReply):
            await self._stream(outcome)
        elif isinstance(outcome, FileReply):
            path = _saved(outcome, self._files_dir)
            saved = text(self._locale, "export_saved", path=path)
            self._write(f"{plain(outcome.caption)}\n{saved}\n")
        else:
            await self._show(outcome)

    async def _show(self, reply: Reply) -> None:
        self._write(plain(reply.text) + "\n")
        if not reply.choices:
            return
        for number, choice in enumerate(reply.choices, start=1):
            self._write(f"  [{number}] {plain(choice.label)}\n")
        line = await self._read(text(self._locale, "prompt_choice"))
        if line is None or not line.strip():
            return  # end of input, or Enter: no choice
        picked = parse_number(line.strip())
        if picked is None:
            # Not a number: a message or a command, typed without leaving the picker first;
            # the next line of the conversation, before any typed after it.
            self._typed_ahead.appendleft(line)
        elif 1 <= picked <= len(reply.choices):
            command = reply.choices[picked - 1].command
            if command is not None:
                await self._answer(command)

    async def _stream(self, reply: TurnReply) -> None:
        answer = _PrintedAnswer(self._write, text(self._locale, "prompt_assistant"))
        watcher = asyncio.create_task(self._watch_for_stop(reply))
        try:
            await stream_turn(
                reply,
                answer,
                self._locale,
                say=self._say,
                footer=lambda message: self._footer(message, reply),
                is_failure_logged=False,  # said on screen; a log would interrupt the conversation
            )
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch_for_stop(self, reply: TurnReply) -> None:
        """While the answer is written: /stop ends it; any other line waits its turn."""
        while True:
            line = await self._lines.get()
            if line and is_command(line.strip(), "stop"):
                reply.turn.stop()
                continue
            self._typed_ahead.append(line)
            if not line:
                return  # end of input: nothing more will come

    async def _say(self, sentence: str) -> None:
        self._write(sentence + "\n")

    def _footer(self, message: Message | None, reply: TurnReply) -> str:
        tokens = message.usage.total_tokens if message and message.usage else "?"
        model = message.model if message else reply.turn.model
        return text(self._locale, "reply_footer", model=model, tokens=tokens)

    async def _next_line(self) -> str | None:
        """The next line of the conversation: one left at a choice prompt, else one read."""
        return await self._read(text(self._locale, "prompt_you"))

    async def _read(self, prompt: str) -> str | None:
        """The next line, or None at end of input (and at every read after it)."""
        if self._is_at_end:
            return None
        if self._typed_ahead:
            line = self._typed_ahead.popleft()
        else:
            self._write(prompt)
            line = await self._lines.get()
        self._is_at_end = not line
        return line.rstrip("\n") if line else None

    def _start_reader(self) -> None:
        """Read stdin on a daemon thread: a blocked read must not keep the process from exiting."""
        loop = asyncio.get_running_loop()

        def pump() -> None:
            while True:
                line = self._in.readline()
                loop.call_soon_threadsafe(self._lines.put_nowait, line)
                if not line:
                    return

        threading.Thread(target=pump, name="stdin", daemon=True).start()

    def _write(self, chunk: str) -> None:
        self._out.write(chunk)
        self._out.flush()


class _PrintedAnswer:
    """An answer printed as it arrives, after the assistant's prompt."""

    def __init__(self, write: Callable[[str], None], prompt: str) -> None:
        self._write, self._prompt = write, prompt
        self._is_prompt_shown = False

    @property
    def has_shown_anything(self) -> bool:
        # Once the prompt is out, however the answer ends is printed after it.
        return self._is_prompt_shown

    async def started(self, session_id: str) -> None:
        self._write(self._prompt)
        self._is_prompt_shown = True

    async def add(self, delta: str) -> None:
        self._write(delta)

    async def finish(self, suffix: str = "", *, footer_line: str = "") -> None:
        self._write(f"{plain(suffix)}\n  [{footer_line}]\n")

    async def cut_off(self, notice: str) -> None:
        self._write("\n" + notice + "\n")

    async def fail(self, reason: str) -> None:
        self._write(reason + "\n")


def _saved(document: FileReply, folder: Path) -> Path:
    """Write the document under its name, or `name-2.md`, `name-3.md`... if that is taken."""
    stem, suffix = Path(document.filename).stem, Path(document.filename).suffix
    for number in range(1, 1000):
        path = folder / (document.filename if number == 1 else f"{stem}-{number}{suffix}")
        try:
            with path.open("xb") as out:
                out.write(document.content)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(folder / document.filename)
