"""Group commit (`helpdesk.groupcommit`) on a real database, SQLite and PostgreSQL.

Units submitted together share one transaction; one that raises is rolled back alone
(the batch is re-run with a savepoint per unit) and gets its own exception.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.groupcommit import GroupCommit
from helpdesk.models import Organization
from helpdesk.runtime import Runtime


class Refused(Exception):
    """Raised by a unit that has written and then fails."""


@dataclass(frozen=True)
class Item:
    name: str
    fail: bool = False
    domain: str | None = None


class Recorder:
    """``apply`` for GroupCommit: adds an organization, notes the session, fails on request."""

    def __init__(self) -> None:
        self.sessions: list[tuple[str, int]] = []
        self._alive: list[AsyncSession] = []  # so no two sessions ever share an id()

    async def __call__(self, session: AsyncSession, item: Item) -> int:
        self._alive.append(session)
        self.sessions.append((item.name, id(session)))
        org = Organization(name=item.name, domain=item.domain or f"{item.name}.example")
        session.add(org)
        await session.flush()  # the failing unit's row is written before it raises
        if item.fail:
            raise Refused(item.name)
        return org.id


async def names(rt: Runtime) -> list[str]:
    async with rt.sessions() as session:
        return sorted((await session.execute(select(Organization.name))).scalars())


async def test_good_units_commit_in_one_transaction(runtime: Runtime) -> None:
    apply = Recorder()
    committer: GroupCommit[Item, int] = GroupCommit(runtime.sessions, apply)
    ids = await asyncio.gather(*(committer.submit(Item(f"good{i}")) for i in range(6)))
    assert len(set(ids)) == 6 and all(isinstance(i, int) for i in ids)
    assert await names(runtime) == [f"good{i}" for i in range(6)]
    assert len({sid for _, sid in apply.sessions}) == 1  # one batch, one session
    async with runtime.sessions() as session:
        by_id = {o.id: o.name for o in (await session.execute(select(Organization))).scalars()}
    assert [by_id[i] for i in ids] == [f"good{i}" for i in range(6)]


async def test_one_failing_unit_is_rolled_back_alone_and_gets_its_own_exception(
        runtime: Runtime) -> None:
    apply = Recorder()
    committer: GroupCommit[Item, int] = GroupCommit(runtime.sessions, apply)
    items = [Item("a"), Item("b"), Item("bad", fail=True), Item("c"), Item("d")]
    results = await asyncio.gather(*(committer.submit(i) for i in items),
                                   return_exceptions=True)
    assert isinstance(results[2], Refused) and str(results[2]) == "bad"
    good = [r for n, r in enumerate(results) if n != 2]
    assert all(isinstance(r, int) for r in good) and len(set(good)) == 4
    assert await names(runtime) == ["a", "b", "c", "d"]
    # the first run (no savepoints) was given up and the batch run again
    assert [n for n, _ in apply.sessions].count("a") == 2


async def test_two_failures_of_different_kinds_each_get_their_own(runtime: Runtime) -> None:
    async with runtime.sessions() as session, session.begin():
        session.add(Organization(name="taken", domain="taken.example"))
    committer: GroupCommit[Item, int] = GroupCommit(runtime.sessions, Recorder())
    items = [Item("x"), Item("dup", domain="taken.example"), Item("y"),
             Item("bad", fail=True), Item("z")]
    results = await asyncio.gather(*(committer.submit(i) for i in items),
                                   return_exceptions=True)
    assert isinstance(results[1], IntegrityError)
    assert isinstance(results[3], Refused)
    assert all(isinstance(results[n], int) for n in (0, 2, 4))
    assert await names(runtime) == ["taken", "x", "y", "z"]


async def test_a_single_failing_unit_gets_its_exception_and_writes_nothing(
        runtime: Runtime) -> None:
    committer: GroupCommit[Item, int] = GroupCommit(runtime.sessions, Recorder())
    with pytest.raises(Refused, match="alone"):
        await committer.submit(Item("alone", fail=True))
    assert await names(runtime) == []
    assert isinstance(await committer.submit(Item("next")), int)  # the committer still works
    assert await names(runtime) == ["next"]


async def test_all_failing_units_fail_and_nothing_is_written(runtime: Runtime) -> None:
    committer: GroupCommit[Item, int] = GroupCommit(runtime.sessions, Recorder())
    results = await asyncio.gather(*(committer.submit(Item(f"f{i}", fail=True))
                                     for i in range(3)), return_exceptions=True)
    assert [str(r) for r in results] == ["f0", "f1", "f2"]
    assert all(isinstance(r, Refused) for r in results)
    assert await names(runtime) == []


async def test_batches_are_cut_at_max_batch_and_all_commit(runtime: Runtime) -> None:
    apply = Recorder()
    committer: GroupCommit[Item, int] = GroupCommit(runtime.sessions, apply, max_batch=3)
    items = [Item(f"n{i:02}", fail=(i == 4)) for i in range(8)]
    results = await asyncio.gather(*(committer.submit(i) for i in items),
                                   return_exceptions=True)
    assert isinstance(results[4], Refused)
    assert await names(runtime) == [f"n{i:02}" for i in range(8) if i != 4]
    first_session = {name: sid for name, sid in reversed(apply.sessions)}
    assert len({first_session[f"n{i:02}"] for i in range(3)}) == 1
    assert len(set(first_session.values())) >= 3  # 8 units in batches of at most 3


async def test_units_submitted_while_a_batch_runs_go_in_the_next_one(runtime: Runtime) -> None:
    apply = Recorder()
    committer: GroupCommit[Item, int] = GroupCommit(runtime.sessions, apply)
    first = asyncio.create_task(committer.submit(Item("early")))
    await asyncio.sleep(0)  # the drainer starts on 'early' alone
    await asyncio.sleep(0)
    late = [asyncio.create_task(committer.submit(Item(f"late{i}"))) for i in range(3)]
    await asyncio.gather(first, *late)
    assert await names(runtime) == ["early", "late0", "late1", "late2"]


async def test_before_commit_finishes_before_the_batch_commits(runtime: Runtime) -> None:
    seen: list[list[str]] = []

    async def before_commit() -> None:
        await asyncio.sleep(0.05)  # longer than the units: commit must wait for it
        async with runtime.read_sessions() as session:  # another connection: none committed
            seen.append(list((await session.execute(select(Organization.name))).scalars()))

    committer: GroupCommit[Item, int] = GroupCommit(runtime.sessions, Recorder(),
                                                    before_commit=before_commit)
    await asyncio.gather(*(committer.submit(Item(f"u{i}")) for i in range(3)))
    assert seen == [[]]
    assert await names(runtime) == ["u0", "u1", "u2"]


async def test_a_failing_before_commit_fails_every_unit_and_commits_nothing(
        runtime: Runtime) -> None:
    async def before_commit() -> None:
        raise OSError(5, "Input/output error")

    committer: GroupCommit[Item, int] = GroupCommit(runtime.sessions, Recorder(),
                                                    before_commit=before_commit)
    results = await asyncio.gather(*(committer.submit(Item(f"u{i}")) for i in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    assert await names(runtime) == []


class Deferring:
    """``apply`` + ``finish``: each unit leaves its row in the session, finish inserts them."""

    def __init__(self, bad: str = "") -> None:
        self.bad = bad  # a name whose deferred row breaks the insert (duplicate domain)
        self.finished: list[list[str]] = []

    async def apply(self, session: AsyncSession, item: Item) -> str:
        session.info.setdefault("later", []).append(item.name)
        return item.name

    async def finish(self, session: AsyncSession) -> None:
        later = session.info.pop("later", [])
        self.finished.append(later)
        for name in later:
            session.add(Organization(name=name, domain="taken.example" if name == self.bad
                                     else f"{name}.example"))
        await session.flush()


async def test_finish_runs_once_after_the_units_of_a_batch(runtime: Runtime) -> None:
    d = Deferring()
    committer: GroupCommit[Item, str] = GroupCommit(runtime.sessions, d.apply, finish=d.finish)
    await asyncio.gather(*(committer.submit(Item(f"u{i}")) for i in range(4)))
    assert d.finished == [["u0", "u1", "u2", "u3"]]
    assert await names(runtime) == ["u0", "u1", "u2", "u3"]


async def test_a_failing_finish_reruns_the_batch_and_fails_only_the_unit_it_held(
        runtime: Runtime) -> None:
    async with runtime.sessions() as session, session.begin():
        session.add(Organization(name="existing", domain="taken.example"))
    d = Deferring(bad="u2")
    committer: GroupCommit[Item, str] = GroupCommit(runtime.sessions, d.apply, finish=d.finish)
    results = await asyncio.gather(*(committer.submit(Item(f"u{i}")) for i in range(4)),
                                   return_exceptions=True)
    assert isinstance(results[2], IntegrityError)
    assert [r for i, r in enumerate(results) if i != 2] == ["u0", "u1", "u3"]
    assert d.finished[0] == ["u0", "u1", "u2", "u3"]  # plain: once, and it failed
    assert d.finished[1:] == [["u0"], ["u1"], ["u2"], ["u3"]]  # then inside each savepoint
    assert await names(runtime) == ["existing", "u0", "u1", "u3"]


async def test_a_lone_caller_never_waits_for_company(runtime: Runtime) -> None:
    committer: GroupCommit[Item, int] = GroupCommit(runtime.sessions, Recorder(), max_wait=5.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(5):
        await committer.submit(Item(f"alone{i}"))
    assert loop.time() - start < 2.5  # no batch waited its 5 s
    assert await names(runtime) == [f"alone{i}" for i in range(5)]


async def _two_batches_of_six(committer: GroupCommit[Item, int]) -> None:
    for round_ in range(2):
        await asyncio.gather(*(committer.submit(Item(f"r{round_}u{i}")) for i in range(6)))


async def test_under_load_a_batch_waits_until_as_many_units_as_before_are_pending(
        runtime: Runtime) -> None:
    apply = Recorder()
    committer: GroupCommit[Item, int] = GroupCommit(runtime.sessions, apply, max_wait=5.0)
    await _two_batches_of_six(committer)
    loop = asyncio.get_running_loop()
    start = loop.time()
    first = asyncio.create_task(committer.submit(Item("first")))
    await asyncio.sleep(0.05)  # the drainer is waiting with one unit
    rest = [asyncio.create_task(committer.submit(Item(f"later{i}"))) for i in range(5)]
    await asyncio.gather(first, *rest)
    assert loop.time() - start < 2.5  # six were pending: it went without waiting out 5 s
    last_six = {sid for name, sid in apply.sessions if name == "first" or name.startswith("later")}
    assert len(last_six) == 1  # one batch, one transaction


async def test_a_waiting_batch_commits_after_max_wait(runtime: Runtime) -> None:
    apply = Recorder()
    committer: GroupCommit[Item, int] = GroupCommit(runtime.sessions, apply, max_wait=0.3)
    await _two_batches_of_six(committer)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await committer.submit(Item("straggler"))
    assert 0.25 <= loop.time() - start < 3.0
    assert "straggler" in await names(runtime)
