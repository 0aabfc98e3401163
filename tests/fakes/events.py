"""An in-memory `EventPublisher` (core.events.publisher) that keeps what it is told."""

from __future__ import annotations

from core.events.publisher import EventData, EventType


class RecordedEvents:
    """Every published event, in order."""

    def __init__(self) -> None:
        self.published: list[tuple[EventType, EventData]] = []

    async def publish(self, event_type: EventType, data: EventData) -> None:
        self.published.append((event_type, data))

    def of_type(self, event_type: EventType) -> list[EventData]:
        return [data for published_type, data in self.published if published_type is event_type]
