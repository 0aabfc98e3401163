"""Discord's JSON shapes and refusals, for the fake Discord in `discord_server`.

Builders return the objects Discord sends (users, members, roles, channels, guilds, messages);
checkers take what a client sent and either return it cleaned or raise `ApiError` carrying
Discord's own error body:

    {"message": "Invalid Form Body", "code": 50035,
     "errors": {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH",
                                         "message": "Must be 2000 or fewer in length."}]}}}

Limits are Discord's documented ones; lengths are counted in code points.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import mimetypes
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

DISCORD_EPOCH_MS = 1_420_070_400_000
MAX_CONTENT_LENGTH = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_ACTION_ROWS = 5
MAX_ROW_ITEMS = 5
MAX_CUSTOM_ID = 100
MAX_CHOICES = 25
MAX_OPTIONS = 25
MAX_COMMAND_SIZE = 4000
MAX_ATTACHMENTS = 10
MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # a bot's upload limit in a guild without boosts
MAX_ATTACHMENT_DESCRIPTION = 1024
EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_EMBEDS = 1 << 2
SUPPRESS_NOTIFICATIONS = 1 << 12
COMPONENTS_V2 = 1 << 15
IS_VOICE_MESSAGE = 1 << 13
SENDABLE_FLAGS = SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | COMPONENTS_V2
INTERACTION_FLAGS = SENDABLE_FLAGS | EPHEMERAL
# What @everyone may do in a fresh guild (view, send, read history, use slash commands...).
DEFAULT_PERMISSIONS = "2248473465835073"
COMMAND_NAME = re.compile(
    r"^[-_\w]{1,32}$"
)  # Discord: ^[-_\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$
MENTION = re.compile(r"<@!?(\d{15,20})>")
ROLE_MENTION = re.compile(r"<@&(\d{15,20})>")
BUTTON = 2
SELECT_TYPES = frozenset({3, 5, 6, 7, 8})  # string, user, role, mentionable, channel selects
EMBED_LIMITS = {"title": 256, "description": 4096}


class ApiError(Exception):
    """One refusal: the HTTP status and Discord's JSON body."""

    def __init__(self, status: int, message: str, code: int, **extra: Any) -> None:
        super().__init__(f"{status} {message} (code {code})")
        self.status = status
        self.body: dict[str, Any] = {"message": message, "code": code, **extra}
        self.headers: dict[str, str] = {}


def form_error(path: tuple[str | int, ...], code: str, message: str) -> ApiError:
    """Discord's 50035 with the error nested under the offending field."""
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        errors = {str(key): errors}
    return ApiError(400, "Invalid Form Body", 50035, errors=errors)


def too_long(path: tuple[str | int, ...], limit: int) -> ApiError:
    return form_error(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def bad_length(path: tuple[str | int, ...], low: int, high: int) -> ApiError:
    return form_error(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")


def required(path: tuple[str | int, ...]) -> ApiError:
    return form_error(path, "BASE_TYPE_REQUIRED", "This field is required")


def empty_message() -> ApiError:
    return ApiError(400, "Cannot send an empty message", 50006)


def unknown(kind: str, code: int) -> ApiError:
    return ApiError(404, f"Unknown {kind}", code)


class Snowflakes:
    """Increasing ids shaped like Discord's (milliseconds since 2015 << 22)."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        now = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(self._last + 1, now)
        return self._last


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


# Objects as Discord sends them.


def user_json(user_id: int, username: str, *, is_bot: bool = False) -> dict[str, Any]:
    user: dict[str, Any] = {
        "id": str(user_id),
        "username": username,
        "global_name": None if is_bot else username.capitalize(),
        "avatar": None,
        "discriminator": "0",
        "public_flags": 0,
        "flags": 0,
        "banner": None,
        "accent_color": None,
        "avatar_decoration_data": None,
        "primary_guild": None,
    }
    if is_bot:
        user["bot"] = True
    return user


def role_json(role_id: int, name: str, permissions: str, position: int) -> dict[str, Any]:
    return {
        "id": str(role_id),
        "name": name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": position,
        "permissions": permissions,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def bot_role_json(role_id: int, bot_user_id: int, name: str, position: int) -> dict[str, Any]:
    """The role Discord makes for a bot in each guild it joins: managed, tagged with the bot."""
    role = role_json(role_id, name, "0", position)
    role.update(managed=True, tags={"bot_id": str(bot_user_id)})
    return role


def member_json(
    user: dict[str, Any] | None, role_ids: list[int], joined_at: str, permissions: int | None
) -> dict[str, Any]:
    """A guild member: no `user` inside MESSAGE_CREATE, `permissions` in interactions."""
    member: dict[str, Any] = {
        "roles": [str(role_id) for role_id in role_ids],
        "nick": None,
        "avatar": None,
        "banner": None,
        "premium_since": None,
        "joined_at": joined_at,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "communication_disabled_until": None,
    }
    if user is not None:
        member["user"] = user
    if permissions is not None:
        member["permissions"] = str(permissions)
    return member


def text_channel_json(channel_id: int, guild_id: int, name: str, position: int) -> dict[str, Any]:
    return {
        "id": str(channel_id),
        "type": 0,
        "guild_id": str(guild_id),
        "name": name,
        "position": position,
        "permission_overwrites": [],
        "parent_id": None,
        "topic": None,
        "nsfw": False,
        "rate_limit_per_user": 0,
        "last_message_id": None,
        "flags": 0,
    }


def dm_channel_json(channel_id: int, recipient: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(channel_id),
        "type": 1,
        "last_message_id": None,
        "flags": 0,
        "recipients": [recipient],
    }


@dataclass
class FakeGuild:
    id: int
    name: str
    owner_id: int
    joined_at: str
    roles: dict[int, dict[str, Any]]  # role id -> role JSON; the guild id is @everyone
    channels: dict[int, dict[str, Any]]  # channel id -> channel JSON
    member_roles: dict[int, list[int]]  # user id -> role ids (without @everyone)
    locale: str = "en-US"

    def permissions_of(self, user_id: int) -> int:
        role_ids = [self.id, *self.member_roles.get(user_id, [])]
        value = 0
        for role_id in role_ids:
            value |= int(self.roles[role_id]["permissions"])
        return value


def guild_create_json(
    guild: FakeGuild,
    users: dict[int, dict[str, Any]],
    application_id: int,
    *,
    is_join: bool = False,
) -> dict[str, Any]:
    """GUILD_CREATE: after READY `unavailable` is false; for a guild just joined it is absent
    (discord.py tells `on_guild_available` from `on_guild_join` by exactly that)."""
    members = [
        member_json(users[user_id], roles, guild.joined_at, None)
        for user_id, roles in guild.member_roles.items()
    ]
    payload: dict[str, Any] = {
        "id": str(guild.id),
        "name": guild.name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(guild.owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "premium_progress_bar_enabled": False,
        "preferred_locale": guild.locale,
        "features": [],
        "application_id": None,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "vanity_url_code": None,
        "max_members": 500000,
        "roles": list(guild.roles.values()),
        "emojis": [],
        "stickers": [],
        "joined_at": guild.joined_at,
        "large": False,
        "unavailable": False,
        "member_count": len(members),
        "members": members,
        "channels": [_without_guild_id(c) for c in guild.channels.values()],
        "threads": [],
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "lazy": True,
        "application_command_counts": {},
        "embedded_activities": [],
        "id_for_application": str(application_id),
    }
    if is_join:
        del payload["unavailable"]
    return payload


def _without_guild_id(channel: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in channel.items() if key != "guild_id"}


@dataclass(frozen=True)
class Upload:
    """A `files[n]` part of a multipart request, read whole."""

    filename: str | None
    content_type: str
    content: bytes


@dataclass(frozen=True)
class MessageVersion:
    content: str
    embeds: list[dict[str, Any]]
    components: list[dict[str, Any]]
    flags: int
    at: float  # time.monotonic()
    attachments: list[dict[str, Any]] = field(default_factory=list)  # Attachment objects


@dataclass
class StoredMessage:
    """One message as Discord keeps it; `versions` holds the original and every edit."""

    id: int
    channel_id: int
    guild_id: int | None
    author: dict[str, Any]
    timestamp: str
    versions: list[MessageVersion]
    mentions: list[dict[str, Any]] = field(default_factory=list)
    reference: StoredMessage | None = None
    interaction: dict[str, Any] | None = None  # interaction_metadata, for interaction replies
    edited_timestamp: str | None = None
    is_deleted: bool = False
    mention_roles: list[int] = field(default_factory=list)  # ids of the guild roles mentioned

    @property
    def current(self) -> MessageVersion:
        return self.versions[-1]

    @property
    def content(self) -> str:
        return self.current.content

    @property
    def components(self) -> list[dict[str, Any]]:
        return self.current.components

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return self.current.embeds

    @property
    def attachments(self) -> list[dict[str, Any]]:
        return self.current.attachments

    @property
    def flags(self) -> int:
        return self.current.flags

    @property
    def history(self) -> list[str]:
        """The content of every version, oldest first."""
        return [version.content for version in self.versions]

    @property
    def edit_count(self) -> int:
        return len(self.versions) - 1

    @property
    def is_ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def is_loading(self) -> bool:
        return bool(self.flags & LOADING)

    @property
    def is_from_bot(self) -> bool:
        return bool(self.author.get("bot"))

    def find_component(self, custom_id: str) -> dict[str, Any] | None:
        return next(
            (c for c in walk_components(self.components) if c.get("custom_id") == custom_id), None
        )


def attachment_filename(name: str) -> str:
    """The name Discord shows and serves a file under: spaces become underscores."""
    return name.replace(" ", "_")


def attachment_content_type(new: NewAttachment) -> str:
    """What the uploader's client said the file is, else what Discord derives from its name."""
    if new.content_type is not None:
        return new.content_type
    guessed = mimetypes.guess_type(attachment_filename(new.filename))[0]
    if guessed and guessed.startswith("text/"):
        return f"{guessed}; charset=utf-8"
    return guessed or "application/octet-stream"


def attachment_json(
    attachment_id: int, new: NewAttachment, *, url: str, proxy_url: str, ephemeral: bool
) -> dict[str, Any]:
    """An Attachment object as Discord documents it: `url` on its CDN, `proxy_url` on its
    media proxy, `width` and `height` of an image, `duration_secs` and `waveform` (base64) of
    a voice message."""
    content_type = attachment_content_type(new)
    attachment: dict[str, Any] = {
        "id": str(attachment_id),
        "filename": attachment_filename(new.filename),
        "size": len(new.upload.content),
        "url": url,
        "proxy_url": proxy_url,
        "content_type": content_type,
    }
    if content_type.startswith("image/"):
        attachment.update(_image_size(new.upload.content))
    if new.duration_secs is not None:
        attachment["duration_secs"] = new.duration_secs
        attachment["waveform"] = base64.b64encode(new.waveform or b"").decode()
    if new.description is not None:
        attachment["description"] = new.description
    if ephemeral:
        attachment["ephemeral"] = True
    return attachment


def _image_size(data: bytes) -> dict[str, int]:
    """`width` and `height`, which Discord gives the images it can read (none for the others)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return {}
    return {"width": width, "height": height}


def message_json(message: StoredMessage, *, application_id: int) -> dict[str, Any]:
    """The Message object of REST answers (gateway events add guild_id and member)."""
    payload: dict[str, Any] = {
        "id": str(message.id),
        "channel_id": str(message.channel_id),
        "author": message.author,
        "content": message.content,
        "timestamp": message.timestamp,
        "edited_timestamp": message.edited_timestamp,
        "tts": False,
        "mention_everyone": False,
        "mentions": message.mentions,
        "mention_roles": [str(role_id) for role_id in message.mention_roles],
        "attachments": message.attachments,
        "embeds": message.embeds,
        "pinned": False,
        "type": 0,
        "flags": message.flags,
        "components": message.components,
    }
    if message.reference is not None:
        ref = message.reference
        payload["type"] = 19
        payload["message_reference"] = {
            "type": 0,
            "message_id": str(ref.id),
            "channel_id": str(ref.channel_id),
            **({"guild_id": str(ref.guild_id)} if ref.guild_id else {}),
        }
        payload["referenced_message"] = message_json(ref, application_id=application_id)
    if message.interaction is not None:
        payload["type"] = 20 if message.interaction["type"] == 2 else 0
        payload["webhook_id"] = str(application_id)
        payload["application_id"] = str(application_id)
        payload["interaction_metadata"] = message.interaction
    return payload


# What clients send, checked.


@dataclass(frozen=True)
class NewAttachment:
    """An attachment a request adds: its upload, the name and description it is shown with;
    from a user, the type their client claims, and a voice message's length and waveform."""

    upload: Upload
    filename: str
    description: str | None
    content_type: str | None = None  # None: derived from the name
    duration_secs: float | None = None
    waveform: bytes | None = None


@dataclass(frozen=True)
class MessageFields:
    """A checked create/edit body; None means "not sent" (an edit keeps the old value)."""

    content: str | None
    embeds: list[dict[str, Any]] | None
    components: list[dict[str, Any]] | None
    flags: int | None
    reference: dict[str, Any] | None
    # What the message's attachments become: ids of existing ones to keep (edits), new ones.
    attachments: list[int | NewAttachment] | None = None


def check_message(
    body: Any, *, allowed_flags: int, is_edit: bool, files: dict[int, Upload] | None = None
) -> MessageFields:
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid Form Body", 50035, errors={})
    content = body.get("content")
    if content is not None:
        if not isinstance(content, str):
            raise form_error(("content",), "BASE_TYPE_STRING", "Must be a string.")
        if len(content) > MAX_CONTENT_LENGTH:
            raise too_long(("content",), MAX_CONTENT_LENGTH)
    flags = body.get("flags")
    if flags is not None and (not isinstance(flags, int) or flags & ~allowed_flags):
        raise form_error(("flags",), "MESSAGE_FLAGS_INVALID", "Invalid flags")
    embeds = _checked_embeds(body["embeds"]) if body.get("embeds") is not None else None
    components = body.get("components")
    if components is not None:
        _check_components(components, is_v2=bool((flags or 0) & COMPONENTS_V2))
    attachments = _checked_attachments(body.get("attachments"), files or {}, is_edit=is_edit)
    has_other = any(body.get(key) for key in ("sticker_ids", "poll")) or bool(attachments)
    if (
        not is_edit
        and "content" not in body
        and embeds is None
        and not components
        and not has_other
    ):
        raise empty_message()
    reference = body.get("message_reference")
    if reference is not None and not isinstance(reference, dict):
        raise form_error(
            ("message_reference",), "MODEL_TYPE_CONVERT", "Only dictionaries may be used."
        )
    return MessageFields(content, embeds, components, flags, reference, attachments)


def is_empty(
    content: str, embeds: list[Any], components: list[Any], attachments: list[Any] | None = None
) -> bool:
    return not content.strip() and not embeds and not components and not attachments


def _checked_attachments(
    listed: Any, files: dict[int, Upload], *, is_edit: bool
) -> list[int | NewAttachment] | None:
    """`attachments` entries: `{"id": n, "filename"}` names the upload `files[n]`; on an edit, the
    id of an attachment the message has keeps it. Uploads it does not list are attached too."""
    if listed is None:
        return [NewAttachment(u, u.filename or "", None) for u in files.values()] or None
    if not isinstance(listed, list):
        raise form_error(("attachments",), "BASE_TYPE_ARRAY", "Must be an array.")
    if len(listed) > MAX_ATTACHMENTS:
        raise too_long(("attachments",), MAX_ATTACHMENTS)
    result: list[int | NewAttachment] = []
    named: set[int] = set()
    for index, entry in enumerate(listed):
        where: tuple[str | int, ...] = ("attachments", index)
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int | str):
            raise required((*where, "id"))
        number = int(entry["id"])
        if number in files:
            named.add(number)
            result.append(_new_attachment(entry, files[number], where))
        elif is_edit:  # the id of an attachment the message has (the fake checks it)
            result.append(number)
        else:
            raise form_error((*where, "id"), "ATTACHMENT_NOT_FOUND", "Unknown attachment")
    result += [NewAttachment(u, u.filename or "", None) for n, u in files.items() if n not in named]
    return result


def _new_attachment(
    entry: dict[str, Any], upload: Upload, where: tuple[str | int, ...]
) -> NewAttachment:
    filename = entry.get("filename") or upload.filename
    if not isinstance(filename, str) or not filename.strip():
        raise required((*where, "filename"))
    description = entry.get("description")
    if description is not None and len(str(description)) > MAX_ATTACHMENT_DESCRIPTION:
        raise too_long((*where, "description"), MAX_ATTACHMENT_DESCRIPTION)
    if not upload.content:
        raise form_error((*where,), "ATTACHMENT_EMPTY", "Cannot send an empty file.")
    if len(upload.content) > MAX_UPLOAD_BYTES:
        raise ApiError(413, "Request entity too large", 40005)
    return NewAttachment(upload, filename, description)


def _checked_embeds(embeds: Any) -> list[dict[str, Any]]:
    if not isinstance(embeds, list):
        raise form_error(("embeds",), "BASE_TYPE_ARRAY", "Must be an array.")
    if len(embeds) > MAX_EMBEDS:
        raise too_long(("embeds",), MAX_EMBEDS)
    total = 0
    for index, embed in enumerate(embeds):
        if not isinstance(embed, dict):
            raise form_error(
                ("embeds", index), "MODEL_TYPE_CONVERT", "Only dictionaries may be used."
            )
        for key, limit in EMBED_LIMITS.items():
            text = embed.get(key) or ""
            if len(text) > limit:
                raise too_long(("embeds", index, key), limit)
            total += len(text)
        for number, embed_field in enumerate(embed.get("fields") or []):
            if not embed_field.get("name") or not embed_field.get("value"):
                raise required(("embeds", index, "fields", number, "name"))
            total += len(embed_field["name"]) + len(embed_field["value"])
        total += len((embed.get("footer") or {}).get("text") or "")
        total += len((embed.get("author") or {}).get("name") or "")
    if total > MAX_EMBED_TOTAL:
        raise form_error(
            ("embeds",), "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"
        )
    return embeds


def walk_components(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for component in components:
        yield component
        yield from walk_components(component.get("components") or [])
        if isinstance(component.get("accessory"), dict):
            yield component["accessory"]


def _check_components(components: Any, *, is_v2: bool) -> None:
    if not isinstance(components, list):
        raise form_error(("components",), "BASE_TYPE_ARRAY", "Must be an array.")
    if not is_v2:
        if len(components) > MAX_ACTION_ROWS:
            raise too_long(("components",), MAX_ACTION_ROWS)
        for index, row in enumerate(components):
            _check_row(row, ("components", index))
    seen: set[str] = set()
    for component in walk_components(components):
        custom_id = component.get("custom_id")
        if custom_id is None:
            continue
        if custom_id in seen:
            raise form_error(
                ("components",),
                "COMPONENT_CUSTOM_ID_DUPLICATED",
                "Component custom id cannot be duplicated",
            )
        seen.add(custom_id)


def _check_row(row: Any, path: tuple[str | int, ...]) -> None:
    if not isinstance(row, dict) or row.get("type") != 1:
        raise form_error(
            (*path, "type"), "UNION_TYPE_CHOICES", 'Value of field "type" must be one of (1,).'
        )
    items = row.get("components")
    if not isinstance(items, list) or not items:
        raise bad_length((*path, "components"), 1, MAX_ROW_ITEMS)
    if len(items) > MAX_ROW_ITEMS:
        raise bad_length((*path, "components"), 1, MAX_ROW_ITEMS)
    for number, item in enumerate(items):
        here = (*path, "components", number)
        if item.get("type") == BUTTON:
            _check_button(item, here)
        elif item.get("type") in SELECT_TYPES:
            if len(items) != 1:
                raise form_error(
                    here,
                    "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                    "The specified component exceeds the maximum width",
                )
            _check_select(item, here)
        else:
            raise form_error(
                (*here, "type"),
                "UNION_TYPE_CHOICES",
                'Value of field "type" must be one of (2, 3, 5, 6, 7, 8).',
            )


def _check_button(button: dict[str, Any], path: tuple[str | int, ...]) -> None:
    style = button.get("style")
    if style not in (1, 2, 3, 4, 5, 6):
        raise form_error(
            (*path, "style"), "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3, 4, 5, 6}."
        )
    if len(button.get("label") or "") > 80:
        raise too_long((*path, "label"), 80)
    if style == 5:
        if not button.get("url"):
            raise form_error((*path, "url"), "BUTTON_COMPONENT_URL_REQUIRED", "A url is required")
        return
    if style != 6:
        _check_custom_id(button.get("custom_id"), path)


def _check_select(select: dict[str, Any], path: tuple[str | int, ...]) -> None:
    _check_custom_id(select.get("custom_id"), path)
    if len(select.get("placeholder") or "") > 150:
        raise too_long((*path, "placeholder"), 150)
    if select["type"] != 3:
        return
    options = select.get("options")
    if not isinstance(options, list) or not 1 <= len(options) <= MAX_CHOICES:
        raise bad_length((*path, "options"), 1, MAX_CHOICES)
    values = [option.get("value") for option in options]
    for number, option in enumerate(options):
        for key in ("label", "value"):
            if not 1 <= len(option.get(key) or "") <= 100:
                raise bad_length((*path, "options", number, key), 1, 100)
    if len(set(values)) != len(values):
        raise form_error(
            (*path, "options"),
            "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED",
            "Select option values must be unique",
        )


def _check_custom_id(custom_id: Any, path: tuple[str | int, ...]) -> None:
    if not isinstance(custom_id, str) or not custom_id:
        raise form_error(
            (*path, "custom_id"), "COMPONENT_CUSTOM_ID_REQUIRED", "A custom id is required"
        )
    if len(custom_id) > MAX_CUSTOM_ID:
        raise too_long((*path, "custom_id"), MAX_CUSTOM_ID)


def check_choices(data: Any) -> list[dict[str, Any]]:
    """The data of an autocomplete answer (callback type 8)."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list):
        raise required(("data", "choices"))
    if len(choices) > MAX_CHOICES:
        raise too_long(("data", "choices"), MAX_CHOICES)
    for index, choice in enumerate(choices):
        _check_choice(choice, ("data", "choices", index))
    return choices


def _check_choice(choice: Any, path: tuple[str | int, ...]) -> None:
    if not isinstance(choice, dict):
        raise form_error(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used.")
    if not 1 <= len(str(choice.get("name") or "")) <= 100:
        raise bad_length((*path, "name"), 1, 100)
    value = choice.get("value")
    if isinstance(value, str) and len(value) > 100:
        raise too_long((*path, "value"), 100)
    if value is None or isinstance(value, bool):
        raise required((*path, "value"))


def check_modal(data: Any) -> None:
    if not isinstance(data, dict):
        raise required(("data",))
    _check_custom_id(data.get("custom_id"), ("data",))
    if not 1 <= len(data.get("title") or "") <= 45:
        raise bad_length(("data", "title"), 1, 45)
    if not 1 <= len(data.get("components") or []) <= 5:
        raise bad_length(("data", "components"), 1, 5)


# Application commands (bulk overwrite bodies).

CHAT_INPUT = 1
SUBCOMMAND_TYPES = frozenset({1, 2})
# Option types that take choices or autocomplete, and their values' Python types.
CHOICE_TYPES: dict[int, type | tuple[type, ...]] = {3: str, 4: int, 10: (int, float)}


def check_commands(body: Any) -> list[dict[str, Any]]:
    """A bulk overwrite body: a list of at most 100 slash (and 5+5 context menu) commands."""
    if not isinstance(body, list):
        raise form_error((), "BASE_TYPE_ARRAY", "Must be an array.")
    if sum(1 for c in body if isinstance(c, dict) and c.get("type", 1) == CHAT_INPUT) > 100:
        raise too_long((), 100)
    seen: set[tuple[int, str]] = set()
    for index, command in enumerate(body):
        _check_command(command, (index,))
        key = (command.get("type", CHAT_INPUT), command["name"])
        if key in seen:
            raise form_error(
                (index, "name"),
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                "Application command names must be unique",
            )
        seen.add(key)
    return body


def _check_command(command: Any, path: tuple[str | int, ...]) -> None:
    if not isinstance(command, dict):
        raise form_error(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used.")
    kind = command.get("type", CHAT_INPUT)
    if kind not in (1, 2, 3, 4):
        raise form_error((*path, "type"), "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3, 4}.")
    name = command.get("name")
    if kind == CHAT_INPUT:
        _check_name(name, (*path, "name"))
        _check_description(command.get("description"), (*path, "description"))
        _check_options(command.get("options") or [], (*path, "options"), parent=None)
    else:
        if not isinstance(name, str) or not 1 <= len(name) <= 32:
            raise bad_length((*path, "name"), 1, 32)
        if command.get("description"):
            raise form_error(
                (*path, "description"),
                "APPLICATION_COMMAND_DESCRIPTION_INVALID",
                "Context menu commands cannot have a description",
            )
    if _size(command) > MAX_COMMAND_SIZE:
        raise form_error(
            path, "APPLICATION_COMMAND_TOO_LARGE", "Command exceeds maximum size (4000)"
        )


def _check_name(name: Any, path: tuple[str | int, ...]) -> None:
    if not isinstance(name, str) or not COMMAND_NAME.match(name) or name != name.lower():
        raise form_error(path, "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")


def _check_description(description: Any, path: tuple[str | int, ...]) -> None:
    if not isinstance(description, str) or not 1 <= len(description) <= 100:
        raise bad_length(path, 1, 100)


def _check_options(options: Any, path: tuple[str | int, ...], *, parent: int | None) -> None:
    if not isinstance(options, list):
        raise form_error(path, "BASE_TYPE_ARRAY", "Must be an array.")
    if len(options) > MAX_OPTIONS:
        raise too_long(path, MAX_OPTIONS)
    kinds = [option.get("type") if isinstance(option, dict) else None for option in options]
    if any(k in SUBCOMMAND_TYPES for k in kinds) and not all(k in SUBCOMMAND_TYPES for k in kinds):
        raise form_error(
            path,
            "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
            "Sub-command and sub-command group option types are mutually exclusive to all "
            "other types",
        )
    names: set[str] = set()
    seen_optional = False
    for index, option in enumerate(options):
        here = (*path, index)
        _check_option(option, here, parent=parent)
        if option["name"] in names:
            raise form_error(
                (*here, "name"),
                "APPLICATION_COMMAND_OPTIONS_DUPLICATE_NAME",
                "Option names must be unique",
            )
        names.add(option["name"])
        if option.get("required") and seen_optional:
            raise form_error(
                here,
                "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID_ORDER",
                "Required options must be placed before non-required options",
            )
        seen_optional = seen_optional or not option.get("required")


def _check_option(option: Any, path: tuple[str | int, ...], *, parent: int | None) -> None:
    if not isinstance(option, dict):
        raise form_error(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used.")
    kind: Any = option.get("type")
    if kind not in range(1, 12):
        raise form_error(
            (*path, "type"),
            "BASE_TYPE_CHOICES",
            "Value must be one of {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}.",
        )
    _check_name(option.get("name"), (*path, "name"))
    _check_description(option.get("description"), (*path, "description"))
    # A command holds groups (2), subcommands (1) or values; a group holds subcommands only.
    allowed_here = {None: True, 2: kind == 1, 1: kind not in SUBCOMMAND_TYPES}[parent]
    if not allowed_here or (kind == 2 and parent is not None):
        raise form_error(
            (*path, "type"),
            "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
            "Option type is not allowed here",
        )
    if kind in SUBCOMMAND_TYPES:
        _check_options(option.get("options") or [], (*path, "options"), parent=kind)
        return
    choices = option.get("choices")
    if (choices or option.get("autocomplete")) and kind not in CHOICE_TYPES:
        raise form_error(
            (*path, "choices"),
            "APPLICATION_COMMAND_OPTION_CHOICES_INVALID",
            "Choices are not allowed for this option type",
        )
    if choices and option.get("autocomplete"):
        raise form_error(
            (*path, "autocomplete"),
            "APPLICATION_COMMAND_AUTOCOMPLETE_INVALID",
            "Autocomplete cannot be enabled with choices",
        )
    if choices:
        if len(choices) > MAX_CHOICES:
            raise too_long((*path, "choices"), MAX_CHOICES)
        for number, choice in enumerate(choices):
            _check_choice(choice, (*path, "choices", number))
            if not isinstance(choice["value"], CHOICE_TYPES[kind]):
                raise form_error(
                    (*path, "choices", number, "value"),
                    "BASE_TYPE_CHOICES",
                    "Choice value does not match the option type",
                )


def _size(command: dict[str, Any]) -> int:
    """Discord's 4000-character budget: names, descriptions, values and localizations."""
    total = len(command.get("name") or "") + len(command.get("description") or "")
    for option in command.get("options") or []:
        total += _size(option)
    for choice in command.get("choices") or []:
        total += len(str(choice.get("name", ""))) + len(str(choice.get("value", "")))
    return total
