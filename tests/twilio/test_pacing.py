"""The pacer on a controllable clock: spacing, bursts, and AIMD adaptation to 429s."""

from __future__ import annotations

import asyncio
import itertools

from batch_engage.testing import FakeClock
from batch_engage.twilio.pacing import Pacer
from batch_engage.twilio.reads import PacedReads


def test_slots_are_evenly_spaced_at_the_configured_rate() -> None:
    """At rate 20, a thousand back-to-back requests get slots exactly 50 ms apart: 50 s in all."""
    clock = FakeClock()
    pacer = Pacer(20, clock=clock)
    slots = [pacer.reserve() for _ in range(1000)]
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(slots)}
    assert gaps == {0.05}
    assert round(slots[-1] - slots[0], 6) == 49.95


def test_an_idle_pause_does_not_turn_into_a_burst() -> None:
    """After ten idle seconds, the next requests are still spaced, not released all at once."""
    clock = FakeClock()
    pacer = Pacer(20, clock=clock)
    pacer.reserve()
    clock.advance(10)
    slots = [pacer.reserve() for _ in range(5)]
    assert slots[0] == clock.monotonic()
    assert [round(s - clock.monotonic(), 6) for s in slots] == [0.0, 0.05, 0.1, 0.15, 0.2]


def test_one_overload_costs_one_cut_not_one_per_refused_request() -> None:
    """Many 429s for requests sent before a cut lower the rate once."""
    clock = FakeClock()
    pacer = Pacer(100, start=100, clock=clock)
    sent = [clock.monotonic() + i * 0.01 for i in range(10)]
    clock.advance(0.1)
    cuts = [pacer.rate_limited(t) for t in sent]
    assert cuts.count(True) == 1
    assert pacer.rate == 85.0
    clock.advance(0.15)
    assert pacer.rate_limited(clock.monotonic())
    assert pacer.cuts == 2


def test_rate_grows_back_additively_and_never_above_the_configured_rate() -> None:
    """After a cut the rate climbs by a small step per second and stops at the configured rate."""
    clock = FakeClock()
    pacer = Pacer(50, start=50, increase=1.0, clock=clock)
    pacer.rate_limited(clock.monotonic())
    low = pacer.rate
    clock.advance(5)
    pacer.reserve()
    assert round(pacer.rate - low, 6) == 5.0
    clock.advance(1000)
    pacer.reserve()
    assert pacer.rate == 50


def test_settles_near_what_the_server_admits() -> None:
    """Against a server admitting 50/s, a job configured at 200/s is cut to just under 50/s, not far below."""
    clock = FakeClock()
    pacer = Pacer(200, start=200, window=3.0, clock=clock)
    # A little over three seconds of the server admitting 50 requests per second.
    for _ in range(160):
        clock.advance(0.02)
        pacer.admitted()
    for _ in range(30):
        # It goes on admitting 50/s while refusing the excess.
        clock.advance(0.02)
        pacer.admitted()
        clock.advance(0.02)
        pacer.admitted()
        pacer.rate_limited(clock.monotonic() - 0.001)
    assert 45 <= pacer.rate <= 50
    assert pacer.stats().lowest >= 45


def test_an_overshoot_many_times_the_limit_is_cut_to_what_the_server_admits() -> None:
    """Refused at 200/s by a server admitting 20/s: once that is measured, the next cut goes to it, not to 85 %."""
    clock = FakeClock()
    pacer = Pacer(200, start=200, clock=clock)
    # Half a second of sending at 200/s, the server admitting one request in ten and refusing the rest.
    for i in range(100):
        clock.advance(0.005)
        if i % 10 == 0:
            pacer.admitted(clock.monotonic())
        else:
            pacer.rate_limited(clock.monotonic())
    assert 19 <= pacer.rate <= 21


def test_the_admitted_rate_counts_by_sending_time_so_slow_answers_do_not_inflate_it() -> None:
    """2xx answered 100 ms late, 429s at once: once the bucket is empty, the estimate is the server's 50/s,
    not 50/s plus the answers still arriving for the burst sent before the first 429."""
    clock = FakeClock()
    pacer = Pacer(200, start=200, clock=clock)
    # Sent at 200/s for a second: the server's full bucket admits all of it, then only every fourth.
    answers = []
    for i in range(300):
        sent = i * 0.005
        admitted = sent < 1.0 or i % 4 == 0
        answers.append((sent + (0.1 if admitted else 0.0), sent, admitted))
    for at, sent, admitted in sorted(answers):
        clock.advance(at - clock.monotonic())
        if admitted:
            pacer.admitted(sent)
        else:
            pacer.rate_limited(sent)
    measured = pacer.measured_rate()
    assert measured is not None
    assert 45 <= measured <= 55
    assert pacer.rate >= 0.95 * 45


def test_slow_start_grows_from_twilios_default_and_halves_on_the_first_429() -> None:
    """A job at 100/s starts at Twilio's default 20/s, grows by half each second, halves on the first 429."""
    clock = FakeClock()
    pacer = Pacer(100, clock=clock)
    pacer.reserve()
    assert pacer.rate == 20
    clock.advance(2)
    pacer.reserve()
    assert round(pacer.rate, 6) == 45.0
    clock.advance(10)
    pacer.reserve()
    assert pacer.rate == 100
    assert Pacer(800, clock=clock).rate == 100
    fresh = Pacer(100, clock=clock)
    fresh.reserve()
    clock.advance(2)
    assert fresh.rate_limited(clock.monotonic() - 0.01)
    assert round(fresh.rate, 6) == 22.5


def test_slow_start_grows_by_half_per_round_trip_of_answers() -> None:
    """Against a fast server, slow start grows once per round of answers, not once a second; a 429 still halves it."""
    clock = FakeClock()
    pacer = Pacer(10_000, clock=clock)
    first = pacer.reserve()
    assert pacer.rate == 1250
    # Answers to requests sent before the round began do not end it; the first one sent after it does.
    clock.advance(0.02)
    pacer.admitted(first - 0.001)
    assert pacer.rate == 1250
    pacer.admitted(first)
    assert pacer.rate == 1875
    pacer.admitted(first + 0.001)
    assert pacer.rate == 1875
    for _ in range(5):
        sent = clock.monotonic()
        clock.advance(0.02)
        pacer.admitted(sent)
    assert pacer.rate == 10_000
    # Slots handed out before a growth were spaced at the old rate: their answers do not end the new round.
    slow = Pacer(100, clock=clock)
    slots = [slow.reserve() for _ in range(10)]
    slow.admitted(slots[0])
    assert slow.rate == 30
    slow.admitted(slots[9])
    assert slow.rate == 30
    slow.admitted(slow.reserve())
    assert slow.rate == 45
    fresh = Pacer(1000, clock=clock)
    sent = fresh.reserve()
    clock.advance(0.05)
    fresh.admitted(sent)
    assert fresh.rate == 187.5
    assert fresh.rate_limited(sent)
    halved = fresh.rate
    # Halved (after the 50 ms of growth by the second that came first), and no longer grown by rounds.
    assert round(halved, 6) == round(187.5 * 1.5**0.05 / 2, 6)
    fresh.admitted(clock.monotonic())
    assert fresh.rate == halved


def test_slow_start_survives_an_idle_wait_of_hours() -> None:
    """A job at 100/s that waited three hours for a send window goes on at its rate (no overflow)."""
    clock = FakeClock()
    pacer = Pacer(100, clock=clock)
    pacer.reserve()
    clock.advance(3 * 3600)
    pacer.reserve()
    assert pacer.rate == 100


def test_a_cap_learnt_mid_run_slows_the_slots_for_good() -> None:
    """pace = "sender": capped at 5/s after the preflight's reads, slots are 200 ms apart and never grow back."""
    clock = FakeClock()
    pacer = Pacer(50, clock=clock)
    pacer.reserve()
    pacer.cap(5.0)
    slots = [pacer.reserve() for _ in range(50)]
    assert {round(b - a, 9) for a, b in itertools.pairwise(slots[1:])} == {0.2}
    clock.advance(600)
    later = [pacer.reserve() for _ in range(3)]
    assert pacer.rate == 5.0 and round(later[2] - later[1], 9) == 0.2
    pacer.cap(80.0)  # never faster than before
    assert pacer.configured == 5.0


def test_answered_reads_grow_slow_start_per_round_trip_as_creates_do() -> None:
    """A run that reads first (settling earlier runs) reaches its rate in round trips of reads, not seconds."""
    clock = FakeClock()
    pacer = Pacer(400, clock=clock)
    reads = PacedReads(pacer, sleep=clock.sleep, attempts=1, max_backoff=0.0)

    async def answer() -> None:
        return None

    async def forty_reads() -> None:
        for _ in range(40):
            await reads.call("a run", answer)

    asyncio.run(forty_reads())
    assert pacer.rate == 400
    assert clock.monotonic() < 0.3
