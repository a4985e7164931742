"""The field note's recommendations table, from simulation.

A manifest (``scenarios/recommendations/recommendations.yaml``) lists workloads. Each names a
scenario, the metric it is judged on (``min p99_ttft_ms``, ``max output_throughput``), its
SLOs, the strategies the field note recommends for it, and the options to compare, each tagged
with the strategies it embodies. Every option runs under the same seeds; one *qualifies* when
every seed meets every SLO with no rejected request and no overload. The qualifying option with
the best objective (mean over the seeds) is the simulation's recommendation; where it lacks a
strategy the note recommends, or the note's own option loses, the table says so and why, from
the runs' queueing, batch sizes and verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmsim.config_io import load_model_file
from llmsim.errors import ConfigError
from llmsim.executors import Executor, LocalExecutor
from llmsim.plan import SLO, judge, parse_slo
from llmsim.render import short
from llmsim.scenario import Scenario, load_scenario
from llmsim.sweep import run_many, seed_mean, seed_values, seeds_for


class OptionSpec(BaseModel):
    """One configuration to compare: the strategies it embodies and the overrides that make it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(min_length=1)
    strategies: list[str]
    set: dict[str, Any] = Field(default_factory=dict)


class WorkloadSpec(BaseModel):
    """A workload of the field note's table and the options to compare on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    scenario: str
    priority: str
    objective: str = Field(pattern=r"^(min|max) [A-Za-z0-9_]+$")
    slos: list[str] = Field(default_factory=list)
    note: list[str] = Field(min_length=1)
    options: list[OptionSpec] = Field(min_length=2)

    @model_validator(mode="after")
    def _note_is_an_option(self) -> WorkloadSpec:
        note = set(self.note)
        if not any(set(o.strategies) == note for o in self.options):
            raise ValueError(
                f"no option has exactly the note's strategies {sorted(note)}; tag one option "
                "with them so the note's recommendation is simulated too"
            )
        labels = [o.label for o in self.options]
        if len(set(labels)) != len(labels):
            raise ValueError(f"option labels must differ: {labels}")
        return self


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seeds: int = Field(default=2, ge=1, le=100)
    workloads: list[WorkloadSpec] = Field(min_length=1)


@dataclass
class OptionResult:
    """One option under every seed."""

    spec: OptionSpec
    summaries: list[dict[str, Any]]
    reasons: list[str]  # per seed, "" when it qualifies

    @property
    def qualifies(self) -> bool:
        return not any(self.reasons)

    def mean(self, key: str) -> float:
        return seed_mean(self.summaries, key)

    @property
    def why_not(self) -> str:
        return next((r for r in self.reasons if r), "")


@dataclass
class WorkloadResult:
    spec: WorkloadSpec
    scenario: Scenario
    slos: list[SLO]
    options: list[OptionResult]

    @property
    def metric(self) -> str:
        return self.spec.objective.split()[1]

    @property
    def maximise(self) -> bool:
        return self.spec.objective.startswith("max")

    def value(self, option: OptionResult) -> float:
        return option.mean(self.metric)

    def ranked(self) -> list[OptionResult]:
        """Qualifying options first, each group best objective first (NaN last)."""

        def key(o: OptionResult) -> tuple[bool, bool, float]:
            v = self.value(o)
            return (not o.qualifies, math.isnan(v), -v if self.maximise else v)

        return sorted(self.options, key=key)

    @property
    def best(self) -> OptionResult:
        return self.ranked()[0]

    @property
    def note_option(self) -> OptionResult:
        note = set(self.spec.note)
        return next(o for o in self.options if set(o.spec.strategies) == note)

    @property
    def agrees(self) -> bool:
        """The simulation's pick embodies every strategy the note recommends."""
        return self.best.qualifies and set(self.spec.note) <= set(self.best.spec.strategies)

    def missing(self) -> list[str]:
        """The note's strategies the simulation's pick does without."""
        return [s for s in self.spec.note if s not in self.best.spec.strategies]

    def close_call(self) -> str:
        """When the runner-up's per-seed objective overlaps the pick's: no clear winner."""
        ranked = self.ranked()
        if len(ranked) < 2 or not ranked[1].qualifies:
            return ""
        spans = [seed_values(o.summaries, self.metric) for o in ranked[:2]]
        if not all(spans) or max(spans[0]) < min(spans[1]) or max(spans[1]) < min(spans[0]):
            return ""
        return (
            f"The runner-up, {ranked[1].spec.label} ({_fmt(self.metric, self.value(ranked[1]))}), "
            "overlaps it seed for seed: no clear winner between the two."
        )

    def why(self) -> str:
        """Where and why the simulation disagrees with the note ("" where it agrees and the
        pick is clear)."""
        best, note = self.best, self.note_option
        if not best.qualifies:
            return f"No option meets the SLOs; the closest, {best.spec.label}: {best.why_not}."
        if self.agrees:
            return self.close_call()
        parts = [f"Does without {', '.join(self.missing())}."]
        if note.qualifies:
            mine, theirs = (_fmt(self.metric, self.value(o)) for o in (note, best))
            pick = f"The note's pick ({note.spec.label})"
            parts.append(f"{pick} qualifies but reaches {mine} against {theirs}.")
        else:
            parts.append(f"The note's pick ({note.spec.label}) fails: {note.why_not}.")
        parts += [_mechanism(note, best), self.close_call()]
        return " ".join(p for p in parts if p)


def _fmt(metric: str, value: float) -> str:
    unit = " ms" if metric.endswith("_ms") else ""
    return f"{metric} {short(value)}{unit}"


def _mechanism(note: OptionResult, best: OptionResult) -> str:
    """The runs' evidence, the note's pick against the simulation's: queue growth, queueing
    delay, per-token latency and batch size."""
    out = []
    if note.mean("overloaded") > 0:
        out.append(
            f"it cannot keep up: its queueing delay grows by "
            f"{note.mean('queue_growth_rate'):.2f} s per second of arrivals"
        )
    q = [(o.mean("mean_queue_ms"), o.mean("p99_queue_ms")) for o in (note, best)]
    if q[0][0] > 2 * q[1][0] + 1:
        out.append(
            f"requests wait {q[0][0]:,.0f} ms in the queue on average (p99 {q[0][1]:,.0f} ms) "
            f"against {q[1][0]:,.0f} ms (p99 {q[1][1]:,.0f} ms)"
        )
    out.append(
        f"p99 TPOT {note.mean('p99_tpot_ms'):,.1f} against {best.mean('p99_tpot_ms'):,.1f} ms, "
        f"mean batch {note.mean('mean_batch_size'):.1f} against "
        f"{best.mean('mean_batch_size'):.1f} sequences"
    )
    text = "; ".join(out)
    return text[0].upper() + text[1:] + "."


def load_manifest(path: str | Path) -> Manifest:
    return load_model_file(Manifest, path)


def recommend(
    path: str | Path,
    *,
    seeds: int | None = None,
    executor: Executor | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[WorkloadResult]:
    """Simulate every option of every workload of the manifest at ``path`` under ``seeds``
    seeds (default: the manifest's), the scenario's seed and the next ones."""
    manifest = load_manifest(path)
    n = seeds if seeds is not None else manifest.seeds
    executor = executor or LocalExecutor()
    folder = Path(path).parent
    results = []
    for i, w in enumerate(manifest.workloads):
        where = f"workloads.{i}"
        try:
            slos = [parse_slo(s) for s in w.slos]
        except ConfigError as exc:
            raise ConfigError(exc.reason, source=str(path), field=f"{where}.slos") from None
        sc = load_scenario(folder / w.scenario)
        seed_list = seeds_for(sc, n)
        if progress:
            progress(f"{w.name}: {len(w.options)} options x {n} seeds")
        variants = []
        for o in w.options:
            try:
                variant = sc.with_overrides(dict(o.set))
            except ConfigError as exc:
                inner = f"{exc.field}: " if exc.field else ""
                raise ConfigError(
                    f"option '{o.label}': {inner}{exc.reason}",
                    source=str(path),
                    field=f"{where}.set",
                ) from None
            variants += [variant.with_overrides({"seed": s}) for s in seed_list]
        summaries = run_many(variants, executor)
        options = []
        for j, o in enumerate(w.options):
            runs = summaries[j * n : (j + 1) * n]
            if w.objective.split()[1] not in runs[0]:
                raise ConfigError(
                    f"objective '{w.objective}': the summary has no such key; valid: "
                    f"{', '.join(sorted(runs[0]))}",
                    source=str(path),
                    field=f"{where}.objective",
                )
            # Saturation is the run's overload verdict (llmsim.diagnostics), not served/offered:
            # runs this short finish a tail after the last arrival.
            verdicts = [judge(s, slos, 0.0) for s in runs]
            options.append(OptionResult(o, runs, [v[1] for v in verdicts]))
        results.append(WorkloadResult(w, sc, slos, options))
    return results


def table_rows(results: Sequence[WorkloadResult]) -> list[list[str]]:
    """The field note's table with the simulation's answer: workload, priority, the note's
    strategies, the simulation's pick, whether they agree and why not."""
    out = []
    for r in results:
        best = r.best
        pick = (
            f"{', '.join(best.spec.strategies)} ({best.spec.label}; "
            f"{_fmt(r.metric, r.value(best))})"
        )

        agree = "yes" if r.agrees else ("partly" if best.qualifies and r.missing() != r.spec.note
                                        else "no")  # fmt: skip
        out.append([r.spec.name, r.spec.priority, ", ".join(r.spec.note), pick, agree, r.why()])
    return out


TABLE_HEAD = ("Workload", "Priority", "Field note recommends", "Simulation recommends",
              "Agrees", "Where the simulation differs, and why")  # fmt: skip


def detail_rows(r: WorkloadResult) -> list[list[str]]:
    """Every option of one workload, best first: objective, verdict."""
    return [
        [
            o.spec.label,
            ", ".join(o.spec.strategies),
            short(r.value(o)),
            "yes" if o.qualifies else f"no: {o.why_not}",
        ]
        for o in r.ranked()
    ]


DETAIL_HEAD = ("Option", "Strategies", "Objective", "Qualifies")
