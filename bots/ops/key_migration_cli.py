"""`chatbridge migrate-keys`: moves user keys of the first layout to today's names.

Every start of the service does the same (bots/runtime.py); this is for after a rolling
upgrade, once no process of an older version is left to write the old names. It runs on the
configured Redis, else on the embedded one, like `chatbridge backup`.
"""

from __future__ import annotations

from bots.runtime import open_services
from core.errors import StoreUnavailable
from core.settings import Settings


async def migrate_keys(settings: Settings) -> str:
    """Move them; returns the summary line."""
    async with open_services(settings, may_join_embedded=True) as services:
        report = services.key_migration
    if report is None:
        raise StoreUnavailable()
    summary = f"moved {report.moved} and merged {report.merged} keys of the first layout"
    if report.conflicts:
        summary += f"; left {report.conflicts} whose new name holds another type"
    return summary
