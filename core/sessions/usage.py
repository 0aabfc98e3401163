"""What a person's turns cost, as `/usage` and `GET /api/users/{userId}/usage` show it.

The Lua scripts add the usage the model reported to one hash per person per UTC day
(`user:usage:<day>:{T}:<person>`, docs/data-model.md), kept 31 days so that the last 30 are
always there to sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

USAGE_WINDOW_DAYS = 30
COST_DIGITS = 6  # OpenRouter reports cost in USD to millionths and below; sums keep six


@dataclass(frozen=True, slots=True)
class UsageTotals:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0  # USD

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class UsageReport:
    today: UsageTotals
    last_30_days: UsageTotals
    daily_budget: int | None  # DAILY_TOKEN_BUDGET; None: no budget
    budget_left: int | None  # what today's budget still allows; None: no budget


def usage_report(reply: Sequence[Any], daily_budget: int) -> UsageReport:
    """read_usage.lua's reply, summed: today first, then the days before it."""
    days = [_totals(reply[i : i + 3]) for i in range(2, len(reply), 3)]
    last_30 = UsageTotals(
        sum(day.prompt_tokens for day in days),
        sum(day.completion_tokens for day in days),
        round(sum(day.cost for day in days), COST_DIGITS),
    )
    today = days[0] if days else UsageTotals()
    if daily_budget <= 0:
        return UsageReport(today, last_30, None, None)
    spent_today = int(reply[1])  # the budget's own counter: reservations of turns in flight too
    return UsageReport(today, last_30, daily_budget, max(0, daily_budget - spent_today))


def _totals(fields: Sequence[Any]) -> UsageTotals:
    prompt, completion, cost = fields
    return UsageTotals(int(prompt or 0), int(completion or 0), round(float(cost or 0), COST_DIGITS))
