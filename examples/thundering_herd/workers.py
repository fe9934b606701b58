"""Order workers: one per order, each with its own inventory client, all at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from .inventory import InventoryClient, Reservation


@dataclass(frozen=True)
class Order:
    id: str
    sku: str
    quantity: int


async def reserve_all(
    clients: Sequence[InventoryClient], orders: Sequence[Order]
) -> list[Reservation]:
    """Each client reserves the stock of its order, all of them concurrently."""
    # return_exceptions: every worker runs to its end, whatever happens to the others.
    outcomes = await asyncio.gather(
        *(
            client.reserve(order.id, order.sku, order.quantity)
            for client, order in zip(clients, orders, strict=True)
        ),
        return_exceptions=True,
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [o for o in outcomes if isinstance(o, Reservation)]
