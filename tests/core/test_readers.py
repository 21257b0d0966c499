"""The hot reads' threads (`studios.db.readers`): every call gets its own result or error, in
any number at once; a result does not wait long for a slow call queued after it; a caller that
gives up does not break the others; closing lets queued calls finish."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from studios.db.readers import HOLD_SECONDS, Readers

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def readers():  # type: ignore[no-untyped-def]
    made = Readers(2, "test-readers")
    yield made
    made.close()


async def test_many_calls_at_once_each_get_their_own_result_or_error(readers: Readers) -> None:
    def call(i: int) -> int:
        if i % 7 == 0:
            raise LookupError(f"no row {i}")
        return i * i

    outcomes = await asyncio.gather(*(readers.submit(lambda i=i: call(i)) for i in range(500)), return_exceptions=True)
    for i, outcome in enumerate(outcomes):
        if i % 7 == 0:
            assert isinstance(outcome, LookupError) and str(outcome) == f"no row {i}"
        else:
            assert outcome == i * i


async def test_a_quick_read_comes_back_while_a_slow_one_after_it_still_runs() -> None:
    """A finished call's result is handed back before the thread waits for more work, and at
    the latest once the call after it ends: the slow call here ends only when the quick result
    has arrived."""
    one = Readers(1, "test-one-reader")  # one thread: both calls land in the same batch
    arrived = threading.Event()
    try:
        quick = one.submit(lambda: time.sleep(HOLD_SECONDS * 2) or "quick")  # past the hold: handed back at its end
        slow = one.submit(lambda: arrived.wait(30))
        async with asyncio.timeout(10):
            assert await quick == "quick"
        assert not slow.done()
        arrived.set()
        async with asyncio.timeout(10):
            assert await slow is True
    finally:
        arrived.set()
        one.close()


async def test_a_caller_that_gives_up_leaves_the_others_their_results(readers: Readers) -> None:
    gate = threading.Event()
    abandoned = readers.submit(lambda: gate.wait(30))
    others = [readers.submit(lambda i=i: i) for i in range(20)]
    abandoned.cancel()
    gate.set()
    async with asyncio.timeout(10):
        assert await asyncio.gather(*others) == list(range(20))
    assert abandoned.cancelled()


async def test_results_of_a_busy_batch_come_back_within_a_bounded_wait(readers: Readers) -> None:
    """Calls of 5 ms each: each result is handed back once its call ends (past HOLD_SECONDS),
    not when the whole batch is done."""
    arrived: list[float] = []
    began = time.perf_counter()

    async def one() -> None:
        await readers.submit(lambda: time.sleep(0.005))
        arrived.append(time.perf_counter() - began)

    await asyncio.gather(*(one() for _ in range(12)))
    assert HOLD_SECONDS < 0.005
    # With the whole batch handed back at its end, all would arrive together: they spread out.
    assert max(arrived) - min(arrived) >= 0.01


async def test_closing_finishes_what_is_queued() -> None:
    closing = Readers(2, "test-closing")
    futures = [closing.submit(lambda i=i: (time.sleep(0.001), i)[1]) for i in range(10)]
    await asyncio.to_thread(closing.close)
    async with asyncio.timeout(10):
        assert await asyncio.gather(*futures) == list(range(10))
