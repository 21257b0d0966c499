"""`SingleFlight`: concurrent askers of one key share one call, its value or its error; an asker
whose leader is cancelled still gets an answer."""

from __future__ import annotations

import asyncio

import pytest

from studios.services.single_flight import SingleFlight


def test_concurrent_askers_share_one_call() -> None:
    calls = 0

    async def main() -> list[int]:
        flights, gate = SingleFlight(), asyncio.Event()

        async def call() -> int:
            nonlocal calls
            calls += 1
            await gate.wait()
            return 42

        askers = [asyncio.create_task(flights.once("k", call)) for _ in range(20)]
        await asyncio.sleep(0)
        gate.set()
        values = await asyncio.gather(*askers)
        assert len(flights) == 0
        values.append(await flights.once("k", call))  # the flight is over: a new call
        return values

    assert asyncio.run(main()) == [42] * 21
    assert calls == 2


def test_an_error_reaches_every_asker_and_other_keys_fly_alone() -> None:
    async def main() -> tuple[list[BaseException | str], str]:
        flights, gate = SingleFlight(), asyncio.Event()

        async def failing() -> str:
            await gate.wait()
            raise LookupError("no such studio")

        async def fine() -> str:
            return "other key"

        askers = [asyncio.create_task(flights.once("k", failing)) for _ in range(5)]
        await asyncio.sleep(0)
        other = await flights.once("j", fine)
        gate.set()
        return await asyncio.gather(*askers, return_exceptions=True), other

    outcomes, other = asyncio.run(main())
    assert other == "other key"
    assert all(isinstance(o, LookupError) for o in outcomes)


def test_when_the_first_asker_is_cancelled_the_others_call_themselves() -> None:
    async def main() -> list[str]:
        flights, gate = SingleFlight(), asyncio.Event()
        count = 0

        async def call() -> str:
            nonlocal count
            count += 1
            mine = count
            await gate.wait()
            return f"call {mine}"

        first = asyncio.create_task(flights.once("k", call))
        await asyncio.sleep(0)
        others = [asyncio.create_task(flights.once("k", call)) for _ in range(3)]
        await asyncio.sleep(0)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        gate.set()
        return await asyncio.gather(*others)

    values = asyncio.run(main())
    assert len(values) == 3 and all(v.startswith("call ") and v != "call 1" for v in values)
