"""`ByteBudget`: large messages take turns to be in memory, in order, and none waits for ever."""

from __future__ import annotations

import asyncio

from mailgate._membudget import ByteBudget


async def _holder(budget: ByteBudget, size: int, name: str, log: list[str],
                  release: asyncio.Event) -> None:
    async with budget.hold(size):
        log.append(name)
        await release.wait()


async def test_holders_beyond_the_budget_wait_and_are_served_in_order() -> None:
    budget, log, release = ByteBudget(100), [], asyncio.Event()
    tasks = [asyncio.create_task(_holder(budget, size, name, log, release))
             for name, size in [("a", 60), ("b", 60), ("c", 10), ("d", 30)]]
    await asyncio.sleep(0.01)
    assert log == ["a"] and budget.used == 60  # c would fit, but b came first
    release.set()
    await asyncio.gather(*tasks)
    assert log == ["a", "b", "c", "d"] and budget.used == 0


async def test_one_larger_than_the_budget_goes_alone() -> None:
    budget, log, release = ByteBudget(100), [], asyncio.Event()
    big = asyncio.create_task(_holder(budget, 500, "big", log, release))
    small = asyncio.create_task(_holder(budget, 1, "small", log, release))
    await asyncio.sleep(0.01)
    assert log == ["big"] and budget.used == 100
    release.set()
    await asyncio.gather(big, small)
    assert log == ["big", "small"] and budget.used == 0


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    budget, log, release = ByteBudget(100), [], asyncio.Event()
    first = asyncio.create_task(_holder(budget, 90, "first", log, release))
    await asyncio.sleep(0.01)
    gone = asyncio.create_task(_holder(budget, 50, "gone", log, release))
    after = asyncio.create_task(_holder(budget, 10, "after", log, asyncio.Event()))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.sleep(0.01)
    assert log == ["first", "after"] and budget.used == 100
    release.set()
    await first
    assert budget.used == 10
    after.cancel()
    await asyncio.gather(after, gone, return_exceptions=True)
    assert budget.used == 0


async def test_a_budget_of_zero_never_waits() -> None:
    budget = ByteBudget(0)
    async with budget.hold(10**9), budget.hold(10**9):
        assert budget.used == 0
