"""Simulation speed: simulated requests per CPU second, and peak memory.

Runs a 100,000-request chat workload (Llama-3.1-8B on one H100, ShareGPT lengths, Poisson
arrivals at about 80 % of the saturation rate). In the same process it runs a baseline: a
straightforward per-step, per-request implementation of the same schedule (the reference the
tests compare the engine with, ``tests/reference.py``) on the first ``--baseline`` requests of
the same stream, and llmsim on that same prefix, so the speed-up is a ratio measured on one
machine at one time.

    python benchmarks/throughput.py [--requests N] [--rate R] [--baseline M] [--cost KIND]

``--cost calibrated`` prices steps with the H100 profile's fitted kernels and measured kernel
tables instead of the roofline.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import llmsim
from llmsim.workload import RequestStream

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.reference import reference_run  # noqa: E402


def baseline(scenario: llmsim.Scenario, stream: RequestStream) -> tuple[float, float]:
    """CPU seconds of llmsim and of the per-request reference on the same requests."""
    t = time.process_time()
    sim = llmsim.Simulation(scenario, stream)
    sim.run()
    ours = time.process_time() - t
    rep = sim.replicas[0]
    pol = scenario.policy
    max_len = scenario.engine.max_model_len or 8192
    t = time.process_time()
    reference_run(
        stream.arrival.tolist(),
        stream.prompt_tokens.tolist(),
        stream.output_tokens.tolist(),
        rep.cost,
        total_blocks=rep.kv.num_blocks,
        block_size=scenario.engine.block_size,
        max_seqs=pol.max_num_seqs,
        budget=pol.token_budget(max_len),
        watermark=pol.watermark,
        max_model_len=max_len,
    )
    return ours, time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=5.6, help="req/s; saturation is about 7")
    ap.add_argument("--baseline", type=int, default=5_000, help="requests for the baseline")
    ap.add_argument("--cost", choices=("roofline", "calibrated"), default="roofline")
    args = ap.parse_args()
    scenario = llmsim.load_scenario(ROOT / "scenarios" / "quickstart.yaml").with_overrides(
        {
            "workload.arrival.rate": args.rate,
            "workload.num_requests": args.requests,
            "engine.cost": {"kind": args.cost},
        }
    )
    # The baseline first, in a fresh process state, on the head of the same stream.
    st = llmsim.Simulation(scenario).stream
    m = min(args.baseline, len(st))
    head = RequestStream(st.arrival[:m], st.prompt_tokens[:m], st.output_tokens[:m])
    ours, ref = baseline(scenario, head)
    del st
    t0 = time.process_time()
    sim = llmsim.Simulation(scenario)
    t1 = time.process_time()
    result = sim.run()
    t2 = time.process_time()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    steps = len(result.steps)
    mean_batch = result.summary["mean_batch_size"]
    s = result.summary
    print(
        f"scenario: {scenario.model} on {scenario.hardware} ({args.cost}), "
        f"{args.requests:,} requests "
        f"at {args.rate} req/s (served {s['request_throughput']:.2f} req/s, "
        f"mean batch {mean_batch:.0f}, {steps:,} steps)"
    )
    print(f"setup (sampling the workload): {t1 - t0:6.2f} CPU-s")
    print(f"simulation + tables + summary: {t2 - t1:6.2f} CPU-s")
    print(f"simulated requests per CPU-s:  {args.requests / (t2 - t0):,.0f}")
    print(f"simulated steps per CPU-s:     {steps / (t2 - t0):,.0f}")
    print(f"peak memory (RSS):             {peak_mib:,.0f} MiB")
    print(
        f"baseline on the first {m:,} requests: per-request reference {ref:.2f} CPU-s, "
        f"llmsim {ours:.2f} CPU-s -> llmsim is {ref / ours:.1f}x faster"
    )


if __name__ == "__main__":
    main()
