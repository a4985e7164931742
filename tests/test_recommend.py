"""llmsim recommend: the field note's recommendations table from simulation. The ranking and
the verdicts on hand-made summaries; the shipped manifest's table (what the simulation
recommends for each workload); manifest errors; the command line and its reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import llmsim
from llmsim.cli import app
from llmsim.errors import ConfigError
from llmsim.plan import parse_slo
from llmsim.recommend import (
    OptionResult,
    OptionSpec,
    WorkloadResult,
    WorkloadSpec,
    load_manifest,
    recommend,
    table_rows,
)
from llmsim.recommend_report import to_html, to_markdown

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "scenarios" / "recommendations" / "recommendations.yaml"
runner = CliRunner()


def _summary(ttft: float, **extra: Any) -> dict[str, Any]:
    base = {"p99_ttft_ms": ttft, "rejected": 0.0, "overloaded": 0.0, "mean_queue_ms": 1.0,
            "p99_queue_ms": 2.0, "p99_tpot_ms": 10.0, "mean_batch_size": 4.0}  # fmt: skip
    return {**base, **extra}


def _result(options: list[tuple[str, list[str], list[dict[str, Any]]]]) -> WorkloadResult:
    specs = [OptionSpec(label=lab, strategies=st) for lab, st, _ in options]
    spec = WorkloadSpec(name="w", scenario="x.yaml", priority="Low latency",
                        objective="min p99_ttft_ms", slos=["ttft:p99<500"], note=["a", "b"],
                        options=specs)  # fmt: skip
    slos = [parse_slo("ttft:p99<500")]
    from llmsim.plan import judge

    results = [
        OptionResult(s, runs, [judge(r, slos, 0.0)[1] for r in runs])
        for s, (_, _, runs) in zip(specs, options, strict=True)
    ]
    sc = llmsim.load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    return WorkloadResult(spec, sc, slos, results)


def test_the_best_qualifying_option_wins_and_the_note_is_judged_against_it() -> None:
    r = _result([
        ("fast but rejects", ["a"], [_summary(10, rejected=3.0), _summary(10)]),
        ("note", ["a", "b"], [_summary(300, mean_queue_ms=50.0), _summary(320)]),
        ("best", ["b"], [_summary(100), _summary(120)]),
        ("misses", ["a", "b", "c"], [_summary(600), _summary(100)]),
    ])  # fmt: skip
    # A rejection disqualifies the fastest; the mean over seeds ranks the rest.
    assert [o.spec.label for o in r.ranked()] == ["best", "note", "fast but rejects", "misses"]
    assert r.best.spec.label == "best" and r.note_option.spec.label == "note"
    assert not r.agrees and r.missing() == ["a"]
    why = r.why()
    assert why.startswith("Does without a. The note's pick (note) qualifies but reaches "
                          "p99_ttft_ms 310 ms against p99_ttft_ms 110 ms.")  # fmt: skip
    assert "wait 26 ms in the queue on average" in why  # (50 + 1) / 2 against 1
    assert "overlaps" not in why  # 100..120 and 300..320 are apart
    assert table_rows([r])[0][4] == "partly"


def test_agreement_and_a_close_call() -> None:
    r = _result([
        ("note", ["a", "b"], [_summary(100), _summary(130)]),
        ("other", ["b"], [_summary(120), _summary(140)]),
    ])  # fmt: skip
    assert r.agrees and r.best.spec.label == "note"
    assert r.why().startswith("The runner-up, other (p99_ttft_ms 130 ms), overlaps it")
    assert table_rows([r])[0][4] == "yes"


def test_no_option_qualifies() -> None:
    r = _result([
        ("note", ["a", "b"], [_summary(900), _summary(700)]),
        ("other", ["b"], [_summary(800), _summary(600)]),
    ])  # fmt: skip
    assert r.why() == "No option meets the SLOs; the closest, other: p99_ttft_ms = 800."
    assert table_rows([r])[0][4] == "no"


@pytest.fixture(scope="module")
def shipped() -> list[WorkloadResult]:
    return recommend(MANIFEST)


def test_the_shipped_table(shipped: list[WorkloadResult]) -> None:
    """What the simulation recommends for the field note's three workloads."""
    chat, docs, mixed = shipped
    # Real-time chat: continuous batching with paged KV, but not a small batch cap: at 6 req/s
    # a cap of 16 sequences queues bursts past the TTFT SLO while its TPOT gain is marginal.
    assert chat.best.spec.label == "continuous, 256 sequences, paged KV"
    assert chat.missing() == ["small batches"]
    assert not chat.note_option.qualifies
    assert chat.note_option.mean("mean_queue_ms") > 5 * chat.best.mean("mean_queue_ms")
    assert abs(chat.note_option.mean("p99_tpot_ms") / chat.best.mean("p99_tpot_ms") - 1) < 0.1
    labels = {o.spec.label: o for o in chat.options}
    contiguous = labels["continuous, 256 sequences, contiguous KV"]
    assert not contiguous.qualifies  # without paged KV the cache holds too few sequences
    # Batch documents: the note's large batches submitted at once, twice the throughput of a
    # small cap or of synchronous clients.
    assert docs.agrees and docs.best.spec.label == "continuous, 256 sequences, submitted at once"
    others = [docs.value(o) for o in docs.options if o is not docs.best]
    assert docs.value(docs.best) > 1.5 * max(others)
    # Mixed: request-level dynamic batching cannot keep up; continuous batching can, with or
    # without routing by class (the two overlap seed for seed).
    assert "dynamic batching" in mixed.missing()
    assert mixed.note_option.mean("overloaded") == 1.0
    assert "continuous batching" in mixed.best.spec.strategies
    assert "no clear winner" in mixed.why()
    rows = table_rows(shipped)
    assert [r[4] for r in rows] == ["partly", "yes", "partly"]


def test_reports(shipped: list[WorkloadResult]) -> None:
    md = to_markdown(shipped)
    assert "| Real-time chat | Low latency | small batches, continuous batching, KV cache" in md
    assert md.count("\n## ") == 3
    html = to_html(shipped)
    assert html.count("<img ") == 3 and html.count("<table>") == 4
    assert 'src="http' not in html  # self-contained


def test_manifest_errors(tmp_path: Path) -> None:
    text = MANIFEST.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("note: [large batches, asynchronous processing]",
                                "note: [large batches, speculative decoding]"))  # fmt: skip
    with pytest.raises(ConfigError, match=r"bad.yaml: workloads\.1.*no option has exactly"):
        load_manifest(bad)
    (tmp_path / "chat.yaml").write_text((MANIFEST.parent / "chat.yaml").read_text())
    wrong = tmp_path / "wrong.yaml"
    one = text[: text.index("  - name: Batch")].replace("min p99_ttft_ms", "min p99_ttft")
    wrong.write_text(one)
    with pytest.raises(ConfigError, match=r"wrong.yaml: workloads\.0\.objective: .*no such key"):
        recommend(wrong, seeds=1)
    wrong.write_text(
        text[: text.index("  - name: Batch")].replace("max_num_seqs: 16}", "max_num_seqs: -3}")
    )
    res = runner.invoke(app, ["recommend", str(wrong), "-n", "1", "-j", "1"])
    assert res.exit_code == 2
    (line,) = [x for x in res.output.splitlines() if x.startswith("error:")]
    assert "wrong.yaml: workloads.0.set: option 'continuous, 16 sequences, paged KV'" in line
    assert "(got -3)" in line


def test_cli(tmp_path: Path, shipped: list[WorkloadResult]) -> None:
    res = runner.invoke(app, ["recommend", str(MANIFEST), "-o", str(tmp_path), "-j", "1"])
    assert res.exit_code == 0, res.output
    assert "Real-time chat: Does without small batches." in " ".join(res.output.split())
    assert (tmp_path / "recommendations.md").read_text() == to_markdown(shipped)
    assert (tmp_path / "recommendations.html").stat().st_size > 10_000
    res = runner.invoke(app, ["recommend", str(tmp_path / "none.yaml")])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
