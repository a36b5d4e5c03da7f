"""Two kinds of part of the GPU check (bench/gpu_check.py), each run in a process of its
own: every CUDA-only test, and one bench case. Each returns a JSON-ready dict with a
`status` (ok, failed, skipped) and what it measured."""

from __future__ import annotations

import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cuda_tests(dry_run: bool) -> dict:
    """pytest -m gpu over the whole suite: the tests that skip without CUDA (tests/
    conftest.py marks them) and those marked `gpu` by hand. Collection errors are
    recorded and the rest still run."""
    import pytest

    xml = Path(tempfile.mkdtemp(prefix="hubtune-gpu-tests-")) / "junit.xml"
    args = ["-m", "gpu", "-q", "-rA", "-p", "no:cacheprovider", "--continue-on-collection-errors",
            f"--junitxml={xml}", "-o", "addopts=", "-o", "junit_family=xunit1",
            str(REPO / "tests")]
    os.chdir(REPO)
    code = pytest.main(args)
    tests = junit_outcomes(xml) if xml.is_file() else []
    counts: dict[str, int] = {}
    for t in tests:
        counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
    if not tests:
        status = "failed"
    elif counts.get("failed") or counts.get("error"):
        status = "failed"
    elif set(counts) == {"skipped"}:
        status = "skipped"
    else:
        status = "ok"
    return {"status": status, "pytest_exit": int(code), "counts": counts, "tests": tests,
            "note": f"{sum(counts.values())} tests: " + ", ".join(
                f"{n} {k}" for k, n in sorted(counts.items()))}


def junit_outcomes(xml: Path) -> list[dict]:
    """(id, outcome, seconds, message) of each test case in a junit file."""
    out = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                outcome = {"failure": "failed"}.get(kind, kind)
                message = (node.get("message") or node.text or "")[:400]
                break
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        out.append({"id": name.replace("tests.", "", 1), "outcome": outcome,
                    "seconds": round(float(case.get("time") or 0), 2), "message": message})
    return out


def bench_case(what: str, dry_run: bool) -> dict:
    """One bench case as rows (bench.common.Result as dicts). `gpu:<size>` is one model
    size of bench/gpu_bench.py; `predict` and `frozen` the cases of those names, made
    small for a dry run."""
    import torch

    repeats = 1 if dry_run else 2  # medians of interleaved pairs: the budget is 8 minutes
    if what.startswith("gpu:"):
        from bench import gpu_bench

        if dry_run:
            gpu_bench.TIMED_STEPS, gpu_bench.TUTORIAL_STEPS = 4, 2
        results = gpu_bench.run(repeats=repeats, sizes=[what[4:]])
    elif what == "predict":
        from bench import predict_bench

        if dry_run:
            predict_bench.ROWS, predict_bench.TRAIN_STEPS = 64, 2
        results = predict_bench.run(repeats=repeats)
    elif what == "frozen":
        from bench import frozen_bench

        if dry_run:
            frozen_bench.TRAIN, frozen_bench.VAL, frozen_bench.EPOCHS = 64, 32, 2
            frozen_bench.PROBE_TRAIN, frozen_bench.PROBE_VAL = 64, 32
        elif torch.cuda.is_available():
            frozen_bench.PROBE_TRAIN, frozen_bench.PROBE_VAL = 1500, 500  # inside the budget
        results = frozen_bench.run(repeats=repeats)
    else:
        return {"status": "failed", "error": f"no bench case {what!r}"}
    rows = [{"case": r.case, "metric": r.metric, "ours": r.ours, "peer": r.peer,
             "peer_name": r.peer_name, "unit": r.unit, "target": r.target, "met": r.met,
             "ratio": r.ratio, "notes": r.notes, "extra": r.extra} for r in results]
    ran = [r for r in rows if r["ours"] is not None]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return {"status": "ok" if ran else "skipped", "device": device, "rows": rows,
            "note": "; ".join(f"{r['metric']}: {r['ratio']:.2f} ({r['target']})"
                              for r in ran if isinstance(r["ratio"], float))
            or (rows[0]["metric"] if rows else "")}
