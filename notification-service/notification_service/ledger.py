"""The delivery ledger in Redis: notifications, one record per delivery, batches, retries.

Ledger is the one object the API and the workers hold; its parts live by job:
  ledger_keys.py     the states, the Redis layout and the records planning hands to claiming
  ledger_queries.py  reading notifications, deliveries and batches
  ledger_plan.py     scheduled sends, batches, planning deliveries (first attempts claimed at once)
  ledger_moves.py    the state machine: claim, finish, retries, the sweeper, cancelling
The Notification record itself is in notification.py.
Each write that moves a delivery is one Lua script in lua/*.lua.
"""

from __future__ import annotations

from notification_service.ledger_moves import LedgerMoves
from notification_service.ledger_plan import LedgerPlanning


class Ledger(LedgerMoves, LedgerPlanning):
    """Async access to the ledger for the API and the workers."""
