"""Serving workloads as benchmark clients send them: drained load stages, a cycled pool of
shared-prefix prompts, target output lengths; and the shipped serving runs read faithfully."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import llmsim
from llmsim.e2e.runs import WHOLE_RUN, client_metrics
from llmsim.e2e.serving_data import DATA_DIR, load_serving_runs
from llmsim.errors import ConfigError
from llmsim.workload import SharedPrefixConfig, StagedArrivals, TargetLength, generate


def _workload(**kw):  # type: ignore[no-untyped-def]
    stages = [{"rate": 5, "duration_s": 10}, {"rate": 8, "duration_s": 5}]
    prefix = {"groups": 3, "prompts_per_group": 4, "system_prompt_tokens": 40,
              "question_tokens": 20, "extra_tokens": 3}  # fmt: skip
    data = {
        "arrival": {"kind": "stages", "stages": stages},
        "shared_prefix": prefix,
        "output_tokens": {"kind": "fixed", "value": 7},
    }
    data.update(kw)
    return llmsim.WorkloadConfig.model_validate(data)


def test_stages_send_exactly_rate_times_duration_each() -> None:
    stream = generate(_workload(), np.random.SeedSequence(1))
    assert stream.stage is not None and stream.stage_starts is not None
    assert np.bincount(stream.stage).tolist() == [50, 40]
    np.testing.assert_allclose(stream.stage_starts, [0.0, 10.0])
    first, second = stream.arrival[stream.stage == 0], stream.arrival[stream.stage == 1]
    assert first.min() > 0 and first.max() < 10
    assert second.min() >= 10 and second.max() < 15
    assert np.all(np.diff(stream.arrival) >= 0)


def test_constant_spacing_and_no_drain() -> None:
    arrival = {"kind": "stages", "spacing": "constant", "drain": False,
               "stages": [{"rate": 2, "duration_s": 2}]}  # fmt: skip
    stream = generate(_workload(arrival=arrival), np.random.SeedSequence(0))
    np.testing.assert_allclose(stream.arrival, [0.0, 0.5, 1.0, 1.5])
    assert stream.stage_starts is None


def test_shared_prefix_pool_cycles_whole_prompts() -> None:
    cfg = SharedPrefixConfig(groups=3, prompts_per_group=4, system_prompt_tokens=40,
                             question_tokens=20, extra_tokens=3, hash_block_size=16)  # fmt: skip
    ids = cfg.draw(np.random.default_rng(0), 30)
    assert cfg.prompt_tokens == 63
    lists = ids.lists()
    assert all(len(x) == 4 for x in lists)  # ceil(63 / 16) blocks
    # Request i and i + 12 send the same prompt; the first pass sends 12 distinct prompts.
    assert all(lists[i] == lists[i + 12] for i in range(18))
    assert len({tuple(x) for x in lists[:12]}) == 12
    # Two whole blocks are system prompt: shared within a group (4 prompts each), not across.
    firsts = {tuple(x[:2]) for x in lists[:12]}
    assert len(firsts) == 3
    assert sum(1 for x in lists[:12] if tuple(x[:2]) == tuple(lists[0][:2])) == 4
    # The third block mixes system prompt and question: the user's own.
    assert len({x[2] for x in lists[:12]}) == 12


def test_target_length_early_stops() -> None:
    cfg = TargetLength(value=248, early_fraction=0.4)
    x = cfg.sample(np.random.default_rng(0), 200_000)
    assert x.max() == 248 and x.min() >= 1
    assert (x < 248).mean() == pytest.approx(0.4, abs=0.01)
    assert x.mean() == pytest.approx(248 * 0.8, rel=0.01)
    assert TargetLength(value=9).sample(np.random.default_rng(0), 5).tolist() == [9] * 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_requests": 10}, "remove num_requests"),
        ({"prompt_tokens": {"kind": "fixed", "value": 3}}, "remove 'prompt_tokens'"),
        ({"output_tokens": None}, "needs output_tokens"),
    ],
)
def test_stage_and_prefix_misuse_is_refused(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _workload(**change)


def test_bad_stage_in_a_scenario_names_the_field(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "s.yaml"
    path.write_text(
        "model: Llama-3.1-8B\nhardware: H100-SXM\nworkload:\n  arrival: {kind: stages, "
        "stages: [{rate: -1, duration_s: 5}]}\n  prompt_tokens: {kind: fixed, value: 5}\n"
        "  output_tokens: {kind: fixed, value: 5}\n"
    )
    with pytest.raises(ConfigError) as err:
        llmsim.load_scenario(path)
    assert "s.yaml" in str(err.value) and "rate" in str(err.value)


def test_client_metrics_by_hand() -> None:
    df = pd.DataFrame(
        {
            "request_id": [0, 1, 2],
            "arrival": [0.0, 1.0, 2.0],
            "first_token": [0.1, 1.3, 2.2],
            "finish": [1.0, 2.3, 4.2],
            "prompt_tokens": [10, 10, 10],
            "output_tokens": [10, 11, 21],
        }
    )
    t = client_metrics(df.assign(stage=[0, 0, 1]))
    v = {(r.stage, r.metric): r.value for r in t.itertuples()}
    assert v[(WHOLE_RUN, "ttft_mean")] == pytest.approx(200.0)
    assert v[(WHOLE_RUN, "e2e_mean")] == pytest.approx(1500.0)
    # (E2E mean - TTFT mean) / (mean output - 1) = 1300 / 13
    assert v[(WHOLE_RUN, "itl_mean")] == pytest.approx(100.0)
    assert v[(WHOLE_RUN, "requests_per_sec")] == pytest.approx(3 / 4.2)
    assert v[(0, "e2e_mean")] == pytest.approx(1150.0)
    assert v[(1, "n_success")] == 1


def test_shipped_runs_reproduce_their_workload_shape() -> None:
    runs = load_serving_runs()
    exp = pd.read_csv(DATA_DIR / "experiments.csv").set_index("exp_key")
    assert len(runs) == 15 and len({r.group for r in runs}) == 6
    for run in runs:
        row = exp.loc[run.key]
        wl = run.scenario.workload
        assert isinstance(wl.arrival, StagedArrivals)
        assert wl.arrival.num_requests == row["n_requests_planned"]
        stream = generate(wl, np.random.SeedSequence(0))
        assert len(stream) == row["n_requests_planned"]
        prompt = run.value("prompt_len_mean")
        if np.isfinite(prompt):  # the measured prompt length, to the token
            assert stream.prompt_tokens.mean() == pytest.approx(prompt, abs=1.0)
        out = run.value("output_len_mean")
        if np.isfinite(out):
            assert stream.output_tokens.mean() == pytest.approx(out, rel=0.03)
        # 100 distinct prompts, cycled
        assert stream.prefix is not None
        assert len({tuple(x) for x in stream.prefix.lists()[:300]}) == 100
    # The run restarted at a lower memory utilisation is read with it.
    low = next(r for r in runs if r.key.startswith("66-"))
    assert low.scenario.engine.gpu_memory_utilization == 0.75
