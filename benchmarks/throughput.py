"""Simulation speed: simulated requests per wall-clock second, and peak memory.

Runs a 100,000-request chat workload (Llama-3.1-8B on one H100, ShareGPT lengths, Poisson
arrivals at about 80 % of the saturation rate) and, in the same process, a plain-Python
baseline that does the minimum any per-step simulator must do (one loop iteration per decode
step per batch), so the speed can be reported as a ratio that does not depend on how busy the
machine is.

    python benchmarks/throughput.py [--requests N] [--rate R]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import llmsim

ROOT = Path(__file__).resolve().parent.parent


def baseline_loop(steps: int, batch: int) -> float:
    """Seconds for a bare loop touching every request of every step once (no simulation)."""
    t = time.perf_counter()
    tokens = [0] * batch
    for _ in range(steps):
        for i in range(batch):
            tokens[i] += 1
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=5.6, help="req/s; saturation is about 7")
    args = ap.parse_args()
    scenario = llmsim.load_scenario(ROOT / "scenarios" / "quickstart.yaml").with_overrides(
        {"workload.arrival.rate": args.rate, "workload.num_requests": args.requests}
    )
    t0 = time.perf_counter()
    sim = llmsim.Simulation(scenario)
    t1 = time.perf_counter()
    result = sim.run()
    t2 = time.perf_counter()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    steps = len(result.steps)
    mean_batch = result.summary["mean_batch_size"]
    base = baseline_loop(steps, max(1, round(mean_batch)))
    s = result.summary
    print(
        f"scenario: {scenario.model} on {scenario.hardware}, {args.requests:,} requests "
        f"at {args.rate} req/s (served {s['request_throughput']:.2f} req/s, "
        f"mean batch {mean_batch:.0f}, {steps:,} steps)"
    )
    print(f"setup (sampling the workload): {t1 - t0:6.2f} s")
    print(f"simulation + tables + summary: {t2 - t1:6.2f} s")
    print(f"simulated requests per second: {args.requests / (t2 - t0):,.0f}")
    print(f"simulated steps per second:    {steps / (t2 - t0):,.0f}")
    print(f"peak memory (RSS):             {peak_mib:,.0f} MiB")
    print(
        f"baseline per-token loop:       {base:6.2f} s  -> llmsim is "
        f"{base / (t2 - t0):.1f}x the speed of touching every token once in Python"
    )


if __name__ == "__main__":
    main()
