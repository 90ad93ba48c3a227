"""Variants and a holdout through the whole run, against the sandbox: the split, its stability, one Flow per variant."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from batch_engage import Credentials, assign_variants, run, validate
from batch_engage.job import load_spec
from batch_engage.sandbox import Sandbox

from conftest import FLOW_SID

FLOW_B = "FW" + "b" * 32


def people(n: int, *, exchange: int = 555) -> pl.DataFrame:
    """``n`` distinct valid contacts (up to 10,000 per exchange)."""
    return pl.DataFrame({"phone": [f"+1415{exchange}{i:04d}" for i in range(n)], "name": [f"P{i}" for i in range(n)]})


def experiment_spec(tmp_path: Path, base_url: str, experiment: dict[str, Any], *, name: str = "job") -> Any:
    """A frame-fed job with an ``[experiment]`` against ``base_url``."""
    raw = {
        "job": {"id": "spring"},
        "flow": {"sid": FLOW_SID, "base_url": base_url},
        "mapping": {"to": "phone", "from": "+15005550006", "parameters": {"name": "name"}},
        "send": {"rate": 5000, "concurrency": 16, "reconcile_delay": 0.0},
        "output": {
            "results": str(tmp_path / f"{name}.results.csv"),
            "checkpoint": str(tmp_path / f"{name}.checkpoint"),
        },
        "experiment": experiment,
    }
    return load_spec(raw=raw)


AB = {
    "holdout": 0.1,
    "variants": [
        {"name": "A", "weight": 1, "parameters": {"variant": "A"}},
        {"name": "B", "weight": 1, "parameters": {"variant": "B"}},
    ],
}


def test_ten_thousand_contacts_are_planned_one_to_one_with_a_tenth_held_out_and_a_grown_list_keeps_everyone(
    tmp_path: Path,
) -> None:
    """10,000 contacts at 1:1 and holdout 0.1, as a run plans them: ~9,000 to send, ~1,000 ``holdout``; in a
    re-exported, reordered list with 500 new contacts every old contact keeps its variant."""
    # The split is the planner's: sending 10,000 through the sandbox would add only what the run below,
    # on 1,000 contacts, already shows (the run sends what the plan said).
    spec = experiment_spec(tmp_path, "http://127.0.0.1:9", AB)
    shown = assign_variants(people(10_000), spec)
    split = Counter(shown["variant"].to_list())
    assert 800 <= split["holdout"] <= 1200
    assert 4300 <= split["A"] <= 4700 and 4300 <= split["B"] <= 4700
    assert split.total() == 10_000
    again = pl.concat([people(10_000), people(500, exchange=666)]).sample(fraction=1.0, shuffle=True, seed=3)
    kept = dict(zip(*assign_variants(again, spec).select("phone", "variant"), strict=True))
    assert all(kept[to] == v for to, v in zip(shown["phone"], shown["variant"], strict=True))


def test_a_run_sends_each_contact_its_planned_variant_holds_out_the_rest_and_a_rerun_sends_only_newcomers(
    sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials, tmp_path: Path
) -> None:
    """1,000 contacts at 1:1 and holdout 0.1: each gets the variant ``assign_variants`` showed before the send,
    A and B reach Studio with their own Parameters and no ``holdout`` contact is sent; a re-exported, reordered
    list with 100 new contacts sends only the new ones, and every old contact keeps its variant."""
    sb = sandbox_factory(rate_limit=None)
    spec = experiment_spec(tmp_path, sb.url, AB)
    planned = assign_variants(people(1_000), spec)
    first = run(spec, frame=people(1_000), credentials=sandbox_creds)
    assert first.exit_code == 0
    by_to = dict(zip(first.results["to"], first.results["variant"], strict=True))
    assert by_to == dict(zip(planned["phone"], planned["variant"], strict=True))
    split = Counter(by_to.values())
    assert split.keys() == {"A", "B", "holdout"}
    assert first.counts["holdout"] == split["holdout"]
    assert first.counts["sent"] == split["A"] + split["B"] == len(sb.ledger())
    # Each variant's Parameters reached Studio with its own contacts, and no holdout contact was sent.
    sent_variant = {e.to: e.parameters["variant"] for e in sb.ledger()}
    assert all(by_to[to] == v for to, v in sent_variant.items())
    assert not {to for to, v in by_to.items() if v == "holdout"} & set(sent_variant)

    newcomers = people(100, exchange=666)
    again = pl.concat([people(1_000), newcomers]).sample(fraction=1.0, shuffle=True, seed=3)
    before = len(sb.ledger())
    second = run(spec, frame=again, credentials=sandbox_creds)
    assert second.exit_code == 0
    new_runs = sb.ledger()[before:]
    fresh = second.results.filter(pl.col("to").is_in(newcomers["phone"].implode()))
    assert len(new_runs) == fresh.filter(pl.col("variant") != "holdout").height > 0
    assert {e.to for e in new_runs} <= set(newcomers["phone"])
    kept = dict(zip(second.results["to"], second.results["variant"], strict=True))
    assert all(kept[to] == v for to, v in by_to.items())


def test_new_weights_move_only_contacts_not_yet_sent(
    sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials, tmp_path: Path
) -> None:
    """After a run at 1:1, B's weight is raised a thousandfold: every contact already sent keeps its variant
    (from the checkpoint, Parameters included), and the newcomers almost all go to B."""
    sb = sandbox_factory(rate_limit=None)
    first = run(experiment_spec(tmp_path, sb.url, AB), frame=people(200), credentials=sandbox_creds)
    was = dict(zip(first.results["to"], first.results["variant"], strict=True))
    assert set(was.values()) == {"A", "B", "holdout"}
    heavy_b = AB | {"variants": [AB["variants"][0], AB["variants"][1] | {"weight": 1000}]}
    before = len(sb.ledger())
    second = run(
        experiment_spec(tmp_path, sb.url, heavy_b),
        frame=pl.concat([people(200), people(100, exchange=666)]),
        credentials=sandbox_creds,
    )
    now = dict(zip(second.results["to"], second.results["variant"], strict=True))
    assert all(now[to] == v for to, v in was.items() if v != "holdout")
    newcomers = [now[to] for to in people(100, exchange=666)["phone"]]
    assert newcomers.count("A") <= 2
    assert all(e.parameters["variant"] == now[e.to] for e in sb.ledger()[before:])


def test_validate_after_the_holdout_is_raised_counts_what_the_run_will_do(
    sandbox_factory: Callable[..., Sandbox], sandbox_creds: Credentials, tmp_path: Path
) -> None:
    """20 of 40 sent with no holdout, then holdout 0.5: validate counts those 20 done (they keep their variant, as
    the run keeps it) and never offers one of them as a sample request; it counted some as held out instead."""
    sb = sandbox_factory(rate_limit=None)
    no_holdout = AB | {"holdout": 0.0}
    first = run(experiment_spec(tmp_path, sb.url, no_holdout), frame=people(20), credentials=sandbox_creds)
    assert first.counts["sent"] == 20
    raised = experiment_spec(tmp_path, sb.url, AB | {"holdout": 0.5})
    checked = validate(raised, frame=people(40))
    assert checked.already_done == 20
    sent = set(first.results["to"].to_list())
    assert not {s.get("To") for s in checked.samples} & sent
    again = run(raised, frame=people(40), credentials=sandbox_creds)
    assert again.counts["holdout"] + again.counts["sent"] - 20 == 40 - 20
