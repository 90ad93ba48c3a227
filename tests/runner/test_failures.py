"""When the run's own storage fails: a write that cannot commit stops the sending, every row left pending says
why, the exit says whether trying again will finish (75) or someone must look (74), and the next run reaches
exactly the rest, nobody twice (counted in the sandbox's ledger)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from batch_engage import api
from batch_engage.control import Progress
from batch_engage.credentials import Credentials
from batch_engage.errors import StorageFailed
from batch_engage.job import load_spec
from batch_engage.runner import sending
from batch_engage.runner.failures import Storage, classify
from batch_engage.sandbox import Sandbox

from conftest import FLOW_SID, make_contacts
from pg import Schema, fresh_schema


@pytest.fixture
def pg_schema() -> Iterator[Schema]:
    """A schema of this test's own on the test server."""
    with fresh_schema() as schema:
        yield schema


def _spec(tmp_path: Path, base_url: str, checkpoint: str, *, output: dict[str, Any] | None = None, **send: Any) -> Any:
    raw = {
        "job": {"id": "failing"},
        "flow": {"sid": FLOW_SID, "api": "engagements", "base_url": base_url},
        "mapping": {"to": "phone", "from": "+15005550006", "parameters": {"name": "name"}},
        "send": {"rate": 100, "concurrency": 4, "reconcile_delay": 0.0} | send,
        "output": {"results": str(tmp_path / "results.csv"), "checkpoint": checkpoint} | (output or {}),
    }
    return load_spec(raw=raw)


def _once_per_contact(sb: Sandbox, rows: int) -> None:
    per_contact = Counter(e.to for e in sb.ledger() if e.source == "rest")
    assert len(per_contact) == rows
    assert max(per_contact.values()) == 1


class TestAFailedIntentWrite:
    ROWS = 300

    @pytest.mark.slow
    def test_ends_75_every_pending_row_says_why_and_the_next_run_reaches_exactly_the_rest(
        self,
        pg_schema: Schema,
        sandbox_factory: Callable[..., Sandbox],
        sandbox_creds: Credentials,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A one-shot failure of the intent write (a trigger on the PostgreSQL journal cancels one statement):
        exit 75, no "Task exception was never retrieved", every pending row has a reason; the next run sends
        to exactly the contacts left, and the ledger holds one run per contact."""
        sb = sandbox_factory(rate_limit=None, active_rule=False)
        spec = _spec(tmp_path, sb.url, pg_schema.history_url)
        armed: list[bool] = []

        def arm(_: Progress) -> None:
            # Once the first answers are in (the journal exists): the next intent write is cancelled, once.
            if not armed:
                armed.append(True)
                pg_schema.execute(
                    "CREATE SEQUENCE {schema}.shots; "
                    "CREATE FUNCTION {schema}.fail_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "IF nextval(TG_TABLE_SCHEMA || '.shots') = 1 THEN RAISE EXCEPTION 'injected' USING ERRCODE = '57014'; END IF; "
                    "RETURN NEW; END $$; "
                    "CREATE TRIGGER fail_once BEFORE INSERT ON {schema}.journal "
                    "FOR EACH ROW WHEN (NEW.state = 'intent') EXECUTE FUNCTION {schema}.fail_once()"
                )

        caplog.set_level(logging.ERROR, logger="asyncio")
        first = api.run(spec, frame=make_contacts(self.ROWS), credentials=sandbox_creds, on_progress=arm)
        assert first.exit_code == 75
        pending = first.results.filter(first.results["status"] == "pending")
        assert 0 < pending.height < self.ROWS
        assert pending["error_message"].null_count() == 0
        assert all("checkpoint failed" in m for m in pending["error_message"])
        assert "checkpoint failed" in (first.summary.stopped_because or "")
        assert "never retrieved" not in caplog.text
        reached = {e.to for e in sb.ledger()}

        second = api.run(spec, frame=make_contacts(self.ROWS), credentials=sandbox_creds)
        assert second.exit_code == 0, second.summary
        _once_per_contact(sb, self.ROWS)
        assert {e.to for e in sb.ledger()} - reached == set(pending["to"])


class TestALockedSqliteCheckpoint:
    @staticmethod
    def _hold(path: Path, seconds: float, counts: dict[str, int], sb: Sandbox) -> None:
        conn = sqlite3.connect(path, timeout=30)
        try:
            conn.execute("BEGIN IMMEDIATE")
            (counts["committed"],) = conn.execute("SELECT COUNT(*) FROM journal WHERE state != 'pending'").fetchone()
            time.sleep(seconds)  # the behaviour under test is a lock held this long on the real clock
            counts["at_release"] = len(sb.ledger())
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _run_with_lock(
        self, tmp_path: Path, sb: Sandbox, creds: Credentials, rows: int, seconds: float, **output: Any
    ) -> tuple[Any, dict[str, int]]:
        checkpoint = tmp_path / "job.checkpoint"
        spec = _spec(tmp_path, sb.url, str(checkpoint), output=output, rate=400, concurrency=8)
        counts: dict[str, int] = {}
        threads: list[threading.Thread] = []

        def lock_midway(progress: Progress) -> None:
            if not threads and progress.done >= rows // 4:
                t = threading.Thread(target=self._hold, args=(checkpoint, seconds, counts, sb), daemon=True)
                threads.append(t)
                t.start()

        result = api.run(spec, frame=make_contacts(rows), credentials=creds, on_progress=lock_midway)
        for t in threads:
            t.join(timeout=30)
        assert "at_release" in counts
        return result, counts

    @pytest.mark.slow
    def test_a_lock_held_7s_mid_run_stops_the_sending_at_the_committed_intents_then_the_run_finishes(
        self, sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials, tmp_path: Path
    ) -> None:
        """Another connection holds BEGIN IMMEDIATE on the checkpoint for 7 s while 600 contacts are sent:
        while it holds it, only contacts whose intents were already committed leave; the run waits (lock_wait
        is 60 s by default) and finishes, exit 0; every contact once."""
        # 600 at 400/s still leave most of the contacts to send when the lock is taken (at a quarter); each
        # contact costs CPU, and the 7 s wait is the behaviour, so more contacts would add nothing.
        sb = sandbox_factory(rate_limit=None, active_rule=False)
        result, counts = self._run_with_lock(tmp_path, sb, sandbox_creds, 600, 7.0)
        assert counts["at_release"] <= counts["committed"] < 600
        assert result.exit_code == 0, result.summary
        _once_per_contact(sb, 600)

    @pytest.mark.slow
    def test_a_lock_held_past_lock_wait_ends_75_and_the_next_run_finishes(
        self, sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials, tmp_path: Path
    ) -> None:
        """With output.lock_wait = "1s", a lock held 3 s ends the run with 75, the pending rows saying why;
        the same run again finishes, every contact once."""
        sb = sandbox_factory(rate_limit=None, active_rule=False)
        result, counts = self._run_with_lock(tmp_path, sb, sandbox_creds, 600, 3.0, lock_wait="1s")
        assert counts["at_release"] <= counts["committed"]
        assert result.exit_code == 75
        assert "locked" in (result.summary.stopped_because or "")
        pending = result.results.filter(result.results["status"] == "pending")
        assert pending["error_message"].null_count() == 0
        again = api.run(
            _spec(tmp_path, sb.url, str(tmp_path / "job.checkpoint"), rate=400, concurrency=8),
            frame=make_contacts(600),
            credentials=sandbox_creds,
        )
        assert again.exit_code == 0
        _once_per_contact(sb, 600)


class TestClassify:
    def test_locks_are_waited_for_a_cancelled_statement_is_transient_a_full_disk_is_broken(self) -> None:
        """What each storage failure means: a lock is waited out, a cancelled statement or lost connection ends
        75, a full or read-only disk ends 74."""

        class PgError(Exception):
            def __init__(self, sqlstate: str) -> None:
                self.sqlstate = sqlstate

        assert classify(sqlite3.OperationalError("database is locked")) == "lock"
        assert classify(PgError("55P03")) == "lock"
        assert classify(PgError("57014")) == "transient"
        assert classify(PgError("08006")) == "transient"
        assert classify(sqlite3.OperationalError("database or disk is full")) == "broken"
        assert classify(OSError(28, "No space left on device")) == "broken"

    def test_a_lock_is_retried_until_lock_wait_then_the_run_fails_transient(self) -> None:
        """A write that keeps meeting a lock is tried again with backoff until lock_wait, then fails (75)."""
        tries: list[int] = []

        def locked() -> None:
            tries.append(1)
            raise sqlite3.OperationalError("database is locked")

        async def no_wait(_: float) -> None:
            return None

        storage = Storage(lock_wait=0.05, wait=no_wait)
        with pytest.raises(StorageFailed, match="stayed locked") as caught:
            asyncio.run(storage.commit("writing intents", locked))
        assert len(tries) >= 2
        assert storage.failure is caught.value
        assert storage.failure.transient


class TestAHoldLostAsARequestIsWritten:
    def test_that_request_stays_the_run_ends_75_and_the_next_run_reaches_each_contact_once(
        self,
        sandbox_factory: Callable[..., Sandbox],
        sandbox_creds: Credentials,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The transport's last check finds the run's hold stale (a run frozen past its lease between the
        dispatcher's check and the write, then woken): that request never leaves, the run stops with exit 75, and
        the next run reaches every contact exactly once."""
        sb = sandbox_factory(rate_limit=None, active_rule=False)
        spec = _spec(tmp_path, sb.url, str(tmp_path / "job.checkpoint.sqlite"), concurrency=1)
        real = sending.make_http_client

        def stale_after_five(**kwargs: Any) -> Any:
            return real(**kwargs | {"may_send": lambda: sb.stats().created < 5})

        monkeypatch.setattr(sending, "make_http_client", stale_after_five)
        with capture_logs() as logs:
            first = api.run(spec, frame=make_contacts(20), credentials=sandbox_creds)
        assert first.exit_code == 75
        assert sb.stats().created == 5
        assert first.results["status"].value_counts().sort("status").rows() == [("pending", 15), ("sent", 5)]
        events = [entry["event"] for entry in logs]
        assert "checkpoint.lease_lost" in events and "studio.unreachable" not in events

        monkeypatch.undo()
        second = api.run(spec, frame=make_contacts(20), credentials=sandbox_creds)
        assert second.exit_code == 0, second.summary
        _once_per_contact(sb, 20)
