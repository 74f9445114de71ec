"""The daily token budget each user has on the server's own OpenAI key.

A scrape that brings no `openai_key` is paid by the platform (OPENAI_API_KEY). Each user may
spend at most OPENAI_SERVER_KEY_DAILY_TOKENS_PER_USER tokens of it per UTC day: the API refuses
a submission once the day's budget is gone (429 model_budget_exceeded), and a task stops
calling the model as soon as the budget runs out mid-way.

What is counted is what the model says it used (`usage.prompt_tokens + completion_tokens` of
each response), added with one INCRBY per response to a key per user and UTC day that expires
a day after the day ends. Calls already in flight when the budget runs out still finish, so a
user can pass the budget by at most the few calls of one task that run at once.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

from redis.asyncio import Redis

from .llm import ModelBudgetError

PREFIX = "scrape:budget:"
# The key outlives its day by one more, so the count of a day is readable while it lasts.
_EXPIRE_SECONDS = 2 * 24 * 3600


def _today() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def budget_key(owner: str, day: dt.date | None = None) -> str:
    day = day or _today().date()
    return f"{PREFIX}{day.isoformat()}:{quote(owner, safe='')}"


def seconds_to_midnight() -> int:
    now = _today()
    tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((tomorrow - now).total_seconds()) + 1)


class BudgetExceeded(Exception):
    """The user's daily budget on the server's key is spent."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"Your daily budget of {limit} tokens on the server's OpenAI key is spent; it renews "
            "at 00:00 UTC. Send your own openai_key to go on today."
        )
        self.limit = limit


class ServerKeyBudget:
    """Tokens one user spends of the server's key today, counted in Redis (shared by replicas)."""

    def __init__(self, redis: Redis, limit: int) -> None:
        self.redis = redis
        self.limit = limit

    async def spent(self, owner: str) -> int:
        raw = await self.redis.get(budget_key(owner))
        return int(raw) if raw else 0

    async def check(self, owner: str) -> None:
        """Raise BudgetExceeded when nothing is left for today."""
        if await self.spent(owner) >= self.limit:
            raise BudgetExceeded(self.limit)

    async def spend(self, owner: str, tokens: int) -> int:
        """Add `tokens` to today's count (atomically) and return the new total."""
        if tokens <= 0:
            return await self.spent(owner)
        key = budget_key(owner)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incrby(key, tokens)
            pipe.expire(key, _EXPIRE_SECONDS)
            total, _ = await pipe.execute()
        return int(total)


class OwnerMeter:
    """The model client's spend guard for one task on the server's key (see llm.SpendGuard)."""

    def __init__(self, budget: ServerKeyBudget, owner: str) -> None:
        self.budget = budget
        self.owner = owner

    async def before_call(self) -> None:
        try:
            await self.budget.check(self.owner)
        except BudgetExceeded as exc:
            raise ModelBudgetError(str(exc)) from None

    async def spent(self, tokens: int) -> None:
        await self.budget.spend(self.owner, tokens)
