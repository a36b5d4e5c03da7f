"""Run the benchmark cases, print one table, and write it to bench/results/.

    python -m bench [--cases store,padding,...] [--repeats N]

Every figure is a median of interleaved repeats with the thread count
pinned, and every speed claim is a ratio against a peer measured in the same
run on the same machine.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import socket
import sys
from pathlib import Path

CASES = ("store", "padding", "throughput", "frozen", "ui", "gpu", "predict", "hubdata",
         "localdata", "queue", "onnx", "report", "audit", "remote_latency", "search")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    results = []
    for case in args.cases.split(","):
        module = __import__(f"bench.{case}_bench", fromlist=["run"])
        print(f"running {case} ...", file=sys.stderr, flush=True)
        results += module.run(repeats=args.repeats)

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    header = (f"hubtune benchmarks, {datetime.date.today()} on {socket.gethostname()} "
              f"({platform.processor() or platform.machine()}, {device}, "
              f"{args.threads} threads, torch {torch.__version__}), median of {args.repeats}")
    table = render(results)
    print(header)
    print(table)
    name = f"{datetime.date.today()}-{socket.gethostname()}"
    if set(args.cases.split(",")) != set(CASES):
        name += "-" + args.cases.replace(",", "-")  # a partial run never clobbers a full one
    out = Path(__file__).parent / "results" / f"{name}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(f"# {header}\n\n{table}\n", encoding="utf-8")
    print(f"\nwritten to {out}", file=sys.stderr)
    return 0


def render(results) -> str:
    lines = ["| case | measure | hubtune | peer | ratio | target | met | notes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        peer = f"{_num(r.peer)} {r.unit} ({r.peer_name})" if r.peer is not None else ""
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
        met = {True: "yes", False: "**no**", None: ""}[r.met]
        lines.append(f"| {r.case} | {r.metric} | {_num(r.ours)} {r.unit} | {peer} | {ratio} | "
                     f"{r.target} | {met} | {r.notes} |")
    return "\n".join(lines)


def _num(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


if __name__ == "__main__":
    sys.exit(main())
