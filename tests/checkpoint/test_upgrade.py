"""A checkpoint of batch-engage 0.1 (format 1, keyed by row) finishes its campaign after the upgrade, nobody twice."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from batch_engage import run
from batch_engage.credentials import Credentials
from batch_engage.errors import CheckpointMismatch
from batch_engage.plan.prepare import fingerprint, prepare
from batch_engage.sandbox import Sandbox

from conftest import FLOW_SID, make_contacts

_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE journal (row INTEGER PRIMARY KEY, key TEXT NOT NULL, state TEXT NOT NULL, sid TEXT,
    http_status INTEGER, error_code INTEGER, error_message TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    intent_at TEXT, completed_at TEXT);
"""


def _old_checkpoint(spec: Any, sandbox: Sandbox, creds: Credentials, *, sent: int, in_flight: int) -> None:
    """What 0.1 left: ``sent`` rows answered, then ``in_flight`` rows whose runs exist but whose answers were lost."""
    plan = prepare(spec, frame=make_contacts(30)).plan
    plan.drop("contact").write_parquet(spec.output.checkpoint + ".plan.parquet")
    db = sqlite3.connect(spec.output.checkpoint)
    db.executescript(_V1)
    fp = {**fingerprint(spec), "input": "0" * 32}
    fp["planning"] = {k: v for k, v in fp["planning"].items() if k != "marker_key"}
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("version", "1"), ("fingerprint", json.dumps(fp))])
    with httpx.Client(auth=(creds.username, creds.password)) as http:
        for row, to in plan.head(sent + in_flight).select("row", "to").iter_rows():
            answer = http.post(
                f"{sandbox.url}/v1/Flows/{FLOW_SID}/Engagements", data={"To": to, "From": "+15005550006"}
            )
            state, sid = ("sent", answer.json()["sid"]) if row <= sent else ("intent", None)
            db.execute(
                "INSERT INTO journal VALUES (?, ?, ?, ?, 200, NULL, NULL, 1, '2026-11-24T10:00:00.000Z', NULL)",
                (row, f"{row}:x", state, sid),
            )
    db.commit()
    db.close()


class TestUpgrade:
    """Format 1 is moved aside and its lines move to their contacts."""

    def test_a_half_sent_campaign_of_0_1_finishes_without_sending_twice(
        self, sandbox: Sandbox, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """10 sent and 2 in flight under 0.1: the upgrade keeps their SIDs, finds the 2, sends the other 18."""
        spec = make_spec(sandbox.url, reconcile_delay=0.0)
        _old_checkpoint(spec, sandbox, sandbox_creds, sent=10, in_flight=2)
        before = {e.to: e.sid for e in sandbox.ledger()}
        result = run(spec, frame=make_contacts(30), credentials=sandbox_creds)
        assert result.counts["sent"] == 30
        assert Counter(e.to for e in sandbox.ledger()).most_common(1)[0][1] == 1
        sids = dict(zip(result.results["to"].to_list(), result.results["sid"].to_list()))
        assert {to: sids[to] for to in before} == before
        assert Path(spec.output.checkpoint + ".v1.old").exists()

    def test_an_old_checkpoint_of_another_flow_is_refused(
        self, sandbox: Sandbox, make_spec: Callable[..., Any], sandbox_creds: Credentials
    ) -> None:
        """The upgrade checks the old fingerprint first: another Flow SID refuses, nothing sent, file untouched."""
        spec = make_spec(sandbox.url)
        _old_checkpoint(spec, sandbox, sandbox_creds, sent=1, in_flight=0)
        with sqlite3.connect(spec.output.checkpoint) as db:
            fp = json.loads(db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()[0])
            db.execute(
                "UPDATE meta SET value = ? WHERE key = 'fingerprint'", (json.dumps(fp | {"flow_sid": "FW" + "9" * 32}),)
            )
        with pytest.raises(CheckpointMismatch, match="the Flow SID"):
            run(spec, frame=make_contacts(30), credentials=sandbox_creds)
        assert len(sandbox.ledger()) == 1 and not Path(spec.output.checkpoint + ".v1.old").exists()
