"""The shipped serving runs: real vLLM deployments on H100 measured at the client.

``data/vllm-h100/`` holds the runs (``experiments.csv``: one deployment and workload per row;
``measured.csv``: what the client measured, long format) and the model configs they served; see
its README for provenance and terms. :func:`load_serving_runs` turns every run into a
:class:`~llmsim.e2e.runs.ServingRun`: a scenario that describes the deployment and its workload as
the client sent it, and the measured figures.

How the workload is read (checked against the measured prompt and output lengths and the
request and token throughputs, which it reproduces within 0.5 %, per stage too):

- load stages of exactly ``rate x duration`` requests, one after another, each drained before the
  next (:class:`~llmsim.workload.StagedArrivals`), Poisson-spaced within a stage;
- prompts from the client's shared-prefix pool, cycled
  (:class:`~llmsim.workload.SharedPrefixConfig`): groups x users (10 x 10 for every run, see
  :data:`POOL`), each prompt the group's system prompt, the user's question and the client's
  framing tokens (the measured prompt length minus the two, where measured; else
  :data:`FRAMING_TOKENS`);
- outputs at the target length, with the measured early-stopping share where the run reports a
  mean output below it (:class:`~llmsim.workload.TargetLength`); a run of the same model that
  does not report it gets the share of the model's other runs (Llama-2-7B ends 31-43 % of its
  answers early despite ``ignore_eos``; the other models reach their target);
- vLLM's limits of the run (sequences, batched tokens, model length, memory utilisation, with the
  lower utilisation its notes record where a run was restarted with one).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from llmsim.config_io import validate_data
from llmsim.e2e.runs import WHOLE_RUN, ServingRun
from llmsim.errors import ConfigError
from llmsim.scenario import Scenario

DATA_DIR = Path(__file__).resolve().parent / "data" / "vllm-h100"

POOL = (10, 10)
"""Groups x prompts per group of the client's prompt pool. The runs taken from
``inference-sim/training`` resolved to 10 x 10 whatever their profile asked for (the installed
client ignored the newer keys). The other runs' resolved configuration is not public; they are
read the same way (same client). Any pool of this size fits the prefix cache many times over, so
the reading changes only the first pass through it. On the runs that report them, the replay's
request and token throughputs and prompt and output lengths match the measured ones within
0.5 %, per stage too."""

FRAMING_TOKENS = 28
"""Tokens the client adds to system prompt + question where the run does not say: the mean over
the runs that report their prompt length."""

HARDWARE = {"H100": "H100-SXM"}
_STAGE = re.compile(r"^\s*([0-9.]+)\s*rps\s*x\s*([0-9.]+)\s*s\s*$")
_MEM_NOTE = re.compile(r"gpu_mem to ([0-9.]+)")


def _stages(text: str, source: str) -> list[dict[str, float]]:
    out = []
    for part in str(text).split(";"):
        m = _STAGE.match(part)
        if m is None:
            raise ConfigError(f"stage '{part}' is not 'R rps x D s'", source=source, field="stages")
        out.append({"rate": float(m.group(1)), "duration_s": float(m.group(2))})
    return out


def _measured(df: pd.DataFrame) -> dict[tuple[int, str], float]:
    cols = zip(df["stage_index"], df["metric"], df["value"], strict=True)
    return {(int(s), str(m)): float(v) for s, m, v in cols}


def _early_fraction(target: float, mean: float) -> float:
    """The share of early stops that gives ``mean`` for a ``target`` (:class:`TargetLength`)."""
    return 0.0 if mean >= target - 1 else min(1.0, 2 * (1 - mean / target))


def run_scenario(
    row: pd.Series,
    measured: dict[tuple[int, str], float],
    *,
    data_dir: Path = DATA_DIR,
    cost: str = "calibrated",
    preset: str = "vllm-v1",
    early_fraction: float | None = None,
) -> dict[str, Any]:
    """The scenario (as a mapping) of one row of ``experiments.csv``. ``early_fraction``: the
    share of outputs that stop before the target, where the run does not report its mean output
    length (default: none)."""
    source = str(data_dir / "experiments.csv")
    config = data_dir / "model_configs" / Path(str(row["model_config"])).parent.name / "config.json"
    system, question = int(row["sp_system_prompt_len"]), int(row["sp_question_len"])
    prompt = measured.get((WHOLE_RUN, "prompt_len_mean"))
    framing = FRAMING_TOKENS if prompt is None else max(0, round(prompt) - system - question)
    memory = float(row["gpu_memory_utilization"])
    note = _MEM_NOTE.search(str(row.get("notes", "")))
    if note is not None:
        memory = float(note.group(1))
    target = int(row["sp_output_len"])
    mean_out = measured.get((WHOLE_RUN, "output_len_mean"))
    early_fraction = early_fraction or 0.0
    hardware = HARDWARE.get(str(row["gpu"]))
    if hardware is None:
        raise ConfigError(f"unknown GPU '{row['gpu']}'", source=source, field="gpu")
    return {
        "name": str(row["exp_key"]),
        "description": f"{row['model_hf']} on {int(row['tp'])}x {row['gpu']}, {row['workload']}",
        "model": str(config),
        "hardware": hardware,
        "tensor_parallel": int(row["tp"]),
        "engine": {
            "preset": preset,
            "gpu_memory_utilization": memory,
            "block_size": int(row["block_size"]),
            "max_model_len": int(row["max_model_len"]),
            "cost": {"kind": cost},
        },
        "policy": {
            "kind": "continuous",
            "chunked_prefill": True,
            "prefix_caching": True,
            "max_num_seqs": int(row["max_num_seqs"]),
            "max_num_batched_tokens": int(row["max_num_batched_tokens"]),
            "cpu_kv_offload_gib": float(row["cpu_kv_offload_gib"]),
        },
        "workload": {
            "arrival": {"kind": "stages", "stages": _stages(row["stages"], source)},
            "shared_prefix": {
                "groups": POOL[0],
                "prompts_per_group": POOL[1],
                "system_prompt_tokens": system,
                "question_tokens": question,
                "extra_tokens": framing,
            },
            "output_tokens": {
                "kind": "target",
                "value": target,
                "early_fraction": early_fraction
                if mean_out is None
                else _early_fraction(target, mean_out),
            },
        },
    }


def _model_early_stops(exp: pd.DataFrame, meas: pd.DataFrame) -> dict[str, float]:
    """Per model, the mean early-stop share of its fitting runs that report their output length
    (only models whose outputs do stop early)."""
    out = meas[(meas["stage_index"] == WHOLE_RUN) & (meas["metric"] == "output_len_mean")]
    rows = exp[exp["set"] == "fit"].merge(out, on="exp_key")
    rows["group"] = [Path(str(p)).parent.name for p in rows["model_config"]]
    rows["f"] = [
        _early_fraction(float(t), float(m))
        for t, m in zip(rows["sp_output_len"], rows["value"], strict=True)
    ]
    share = rows.groupby("group")["f"].mean()
    return {str(g): float(f) for g, f in share.items() if f > 0}


def load_serving_runs(
    data_dir: Path = DATA_DIR,
    *,
    sets: tuple[str, ...] = ("fit",),
    groups: tuple[str, ...] | None = None,
    cost: str = "calibrated",
    preset: str = "vllm-v1",
    overrides: list[str] | None = None,
) -> list[ServingRun]:
    """Every run of ``sets`` (``fit``; ``overload``: the run the engine could not keep up with),
    of the models in ``groups`` (default: all)."""
    exp = pd.read_csv(data_dir / "experiments.csv")
    meas = pd.read_csv(data_dir / "measured.csv")
    early = _model_early_stops(exp, meas)
    runs = []
    for _, row in exp[exp["set"].isin(sets)].iterrows():
        key = str(row["exp_key"])
        group = Path(str(row["model_config"])).parent.name
        if groups is not None and group not in groups:
            continue
        measured = _measured(meas[meas["exp_key"] == key])
        imputed = (WHOLE_RUN, "output_len_mean") not in measured and group in early
        data = run_scenario(
            row, measured, data_dir=data_dir, cost=cost, preset=preset,
            early_fraction=early.get(group),
        )  # fmt: skip
        scenario = validate_data(Scenario, data, f"{data_dir / 'experiments.csv'} ({key})")
        if overrides:
            scenario = scenario.with_overrides(overrides)
        notes = tuple(n for n in (str(row.get("notes", "") or ""),) if n and n != "nan")
        if imputed:
            notes += (
                f"output lengths: {early[group]:.0%} stop early, as measured on this model's "
                "other runs (this run does not report its mean output length)",
            )
        runs.append(ServingRun(key, group, scenario, measured, str(data_dir), notes))
    return runs
