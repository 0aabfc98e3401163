"""A Discord message's files, fetched for the core.

A message's attachments (pictures, documents, voice messages: an `audio/ogg` attachment with
`duration_secs` and `waveform` under the IS_VOICE_MESSAGE flag; any other audio) all go the same
way: the core tells each file's kind from its bytes. What the core would refuse anyway is refused
here before a byte is downloaded: more files than it takes in one message, or a file whose `size`,
as Discord announces it, is over MAX_ATTACHMENT_BYTES. The core checks the bytes' own size again.

Each file is read with discord.py (`Attachment.read()`) from its `url` on Discord's CDN; when that
fails or stalls, once more from its `proxy_url` (Discord's media proxy, another host serving the
same file). Both failing is `DownloadFailed`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp
import discord
import structlog

from core.attachments.intake import MAX_FILES_PER_MESSAGE, IncomingFile
from core.attachments.media import check_size
from core.errors import FileTooLarge, InputError, TooManyAttachments

log = structlog.get_logger(__name__)

# One try at one file. discord.py's session waits 5 minutes; a stalled CDN would hold every
# later message of the person in that channel (they are answered in order) for that long.
DOWNLOAD_SECONDS = 60.0
_DOWNLOAD_ERRORS = (discord.HTTPException, aiohttp.ClientError, TimeoutError)


class DownloadFailed(Exception):
    """Neither Discord's CDN nor its media proxy gave a file."""


def refusal_before_download(
    attachments: Sequence[discord.Attachment], *, max_file_bytes: int
) -> InputError | None:
    """The core's refusal of these files, known from what Discord announces; None: fetch them."""
    if len(attachments) > MAX_FILES_PER_MESSAGE:
        return TooManyAttachments(count=len(attachments), limit=MAX_FILES_PER_MESSAGE)
    for attachment in attachments:
        try:
            check_size(attachment.size, limit=max_file_bytes)
        except FileTooLarge as refused:
            return refused
    return None


async def downloaded(attachments: Sequence[discord.Attachment]) -> list[IncomingFile]:
    """Every file's bytes, fetched side by side; DownloadFailed if one could not be."""
    async with asyncio.TaskGroup() as group:
        reads = [group.create_task(_read(attachment)) for attachment in attachments]
    files = []
    for attachment, read in zip(attachments, reads, strict=True):
        data = read.result()
        if data is None:
            raise DownloadFailed
        files.append(IncomingFile(data, attachment.filename))
    return files


async def _read(attachment: discord.Attachment) -> bytes | None:
    """The file from the CDN, else from the media proxy; None if neither gave it."""
    for is_proxy in (False, True):
        try:
            async with asyncio.timeout(DOWNLOAD_SECONDS):
                return await attachment.read(use_cached=is_proxy)
        except _DOWNLOAD_ERRORS as error:
            # Not the URL: its query signs access to the file.
            log.warning(
                "discord.attachment_download_failed",
                attachment_id=attachment.id,
                source="proxy_url" if is_proxy else "url",
                status=getattr(error, "status", None),
                error=type(error).__name__,
            )
    return None
