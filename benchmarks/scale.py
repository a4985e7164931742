"""Start-up and scale of ``llmsim`` as a user runs it: each case is one whole ``llmsim``
process (imports, workload, simulation, tables, summary, files written, exit), measured by
the CPU seconds (user + system) and the peak memory (RSS) the operating system reports for it.

    python benchmarks/scale.py [CASE ...] [--repeat N]

Cases (default: startup vidur single ladder):

- ``startup``: ``llmsim --help``, and a 10-request run of scenarios/quickstart.yaml;
- ``vidur``: benchmarks/vidur.yaml (Llama-2-70B on 2x A100-80GB, Poisson 2 req/s, 512/128)
  at 1,000 and 20,000 requests;
- ``single``: 100,000 ShareGPT-length requests, Llama-3.1-8B on one H100 at 5.6 req/s
  (about 80 % of its saturation rate);
- ``ladder``: the same 100,000 requests on 1, 4, 16 and 64 replicas, the arrival rate scaled
  with the replicas (the same load on each);
- ``million``: 1,000,000 requests on 16 replicas (minutes);
- ``pool``: ``llmsim sweep`` of 8 points (quickstart, 20,000 requests each, rates 1-6 req/s)
  on a process pool of 1 and of every CPU (``-j``), with the wall time and the speed-up;
- ``instructions``: machine instructions per simulated request, counted by valgrind's
  cachegrind (needs ``valgrind``): whole runs of 2,500 and 5,000 requests (quickstart on 1
  and on 16 replicas), the difference divided by 2,500, so start-up cancels; and the
  instructions of the 10-request run. Unlike CPU time
  it repeats exactly, so it measures changes of a few percent on a noisy machine.

CPU seconds rather than wall seconds, because a shared machine's wall clock measures the
neighbours too (except for ``pool``, whose point is the wall time). With ``--repeat N`` each
case runs N times and the lowest figures are shown.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = str(ROOT / "scenarios" / "quickstart.yaml")
VIDUR = str(ROOT / "benchmarks" / "vidur.yaml")
RATE = 5.6  # req/s per H100 replica for the quickstart chat workload, about 80 % load


SOURCE = ROOT  # the llmsim source tree that runs (--source)


def measure(args: list[str]) -> tuple[float, float]:
    """CPU seconds and peak RSS (MiB) of one ``python -m llmsim ARGS`` process (its CPU
    seconds include its worker processes')."""
    env = {**os.environ, "PYTHONPATH": str(SOURCE)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmsim", *args],
        env=env,
        cwd=SOURCE,  # ``python -m`` puts the working folder first on the path
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"llmsim {' '.join(args)} failed ({proc.returncode}):\n{err}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def run_case(label: str, args: list[str], repeat: int, requests: int | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if args[0] == "run":
            args = [*args, "-q", "-o", tmp]
        runs = [measure(args) for _ in range(repeat)]
        cpu = min(c for c, _ in runs)
        rss = min(m for _, m in runs)
        line = f"{label:<44} {cpu:8.2f} CPU-s {rss:8,.0f} MiB"
        summary = Path(tmp) / "summary.json"
        if requests is not None and summary.exists():
            steps = json.loads(summary.read_text())["num_steps"]
            line += (
                f"  {requests / cpu:9,.0f} req/CPU-s  {steps:11,.0f} steps"
                f"  {cpu / steps * 1e6:5.1f} us/step"
            )
        print(line, flush=True)


def pool_case(repeat: int) -> None:
    """The same sweep on one worker and on every CPU: wall seconds, CPU seconds, speed-up."""
    cpus = len(os.sched_getaffinity(0))
    walls = {}
    for jobs in dict.fromkeys((1, cpus)):
        times = []
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as tmp:
                sweep = ["sweep", QUICKSTART, "--vary", "workload.arrival.rate=1:6:8", "--set",
                         "workload.num_requests=20000", "-j", str(jobs), "-q", "--no-plots",
                         "-o", tmp]  # fmt: skip
                t0 = time.perf_counter()
                cpu, _ = measure(sweep)
                times.append((time.perf_counter() - t0, cpu))
        wall, cpu = min(times)
        walls[jobs] = wall
        print(f"sweep of 8 points, -j {jobs:<2}{'':25} {wall:8.2f} wall-s {cpu:8.2f} CPU-s",
              flush=True)  # fmt: skip
    if cpus > 1:
        print(f"speed-up on {cpus} workers: {walls[1] / walls[cpus]:.2f}x", flush=True)


def instructions(args: list[str]) -> int:
    """Machine instructions of one ``python -m llmsim ARGS`` process, under cachegrind. One
    BLAS thread and a fixed hash seed, so that the count repeats exactly."""
    env = {
        **os.environ,
        "PYTHONPATH": str(SOURCE),
        "PYTHONHASHSEED": "0",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    proc = subprocess.run(
        [*cmd, sys.executable, "-m", "llmsim", *args],
        env=env,
        cwd=SOURCE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"valgrind llmsim {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def instructions_case() -> None:
    """Instructions per simulated request: runs of 2,500 and 5,000 requests, the difference."""
    if shutil.which("valgrind") is None:
        print("instructions: valgrind is not installed; skipped", flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        ten = instructions(
            ["run", QUICKSTART, "--set", "workload.num_requests=10", "-q", "-o", tmp]
        )
    print(f"{'instructions, 10-request run (start-up)':<44} {ten:16,}", flush=True)
    for k in (1, 16):
        counts = []
        for n in (2_500, 5_000):
            with tempfile.TemporaryDirectory() as tmp:
                counts.append(instructions([*fleet(n, k), "-q", "-o", tmp]))
        per = (counts[1] - counts[0]) / 2_500
        label = f"instructions per request, {k} replica(s)"
        print(f"{label:<44} {per:12,.0f}   (whole 2,500-request run: {counts[0]:,})", flush=True)


def fleet(requests: int, replicas: int) -> list[str]:
    return [
        "run",
        QUICKSTART,
        "--set",
        f"workload.num_requests={requests}",
        "--set",
        f"workload.arrival.rate={RATE * replicas:g}",
        "--set",
        f"data_parallel={replicas}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cases = ("startup", "vidur", "single", "ladder", "million", "pool", "instructions")
    ap.add_argument("cases", nargs="*", choices=cases, default=list(cases[:4]))
    ap.add_argument("--repeat", type=int, default=1, help="runs per case (lowest shown)")
    ap.add_argument(
        "--source", type=Path, default=ROOT, help="llmsim source tree to run (default: this one)"
    )
    args = ap.parse_args()
    global SOURCE
    SOURCE = args.source.resolve()
    r = args.repeat
    print(f"python {sys.version.split()[0]}, one process per line, lowest of {r}")
    if "startup" in args.cases:
        run_case("llmsim --help", ["--help"], r)
        ten = ["run", QUICKSTART, "--set", "workload.num_requests=10"]
        run_case("llmsim run quickstart, 10 requests", ten, r, 10)
    if "vidur" in args.cases:
        for n in (1_000, 20_000):
            vidur = ["run", VIDUR, "--set", f"workload.num_requests={n}"]
            run_case(f"vidur, {n:,} requests", vidur, r, n)
    if "single" in args.cases and "ladder" not in args.cases:
        run_case("100,000 requests, 1 replica", fleet(100_000, 1), r, 100_000)
    if "ladder" in args.cases:
        for k in (1, 4, 16, 64):
            run_case(f"100,000 requests, {k} replica(s)", fleet(100_000, k), r, 100_000)
    if "million" in args.cases:
        run_case("1,000,000 requests, 16 replicas", fleet(1_000_000, 16), r, 1_000_000)
    if "pool" in args.cases:
        pool_case(r)
    if "instructions" in args.cases:
        instructions_case()


if __name__ == "__main__":
    main()
