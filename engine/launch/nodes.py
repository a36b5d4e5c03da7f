"""Training on several machines: node 0's launcher, and the nodes that hold no run.

`hubtune train CONFIG --nnodes N --node-rank R --rdzv-endpoint HOST:PORT` is the same
command on every machine. Node 0 records the run like any other; its worker command is
`python -m engine.launch.nodes launch ...`, which runs torchrun (static rendezvous, see
engine.cluster.rendezvous) over `engine.launch.worker` and, when the nodes never meet, records
the run as failed with the reason: a run whose worker never started has no one else
to say why. Nodes 1 and later record nothing in a store: `run_node` starts torchrun
in the foreground over `python -m engine.launch.nodes rank FOLDER`, with a folder of its own
under HUBTUNE_HOME/nodes/ holding the config, the worker log and each rank's outcome.
Their ranks train their shards, write nothing else, and share the stop request and
the end of training with rank 0 through the training loop's collectives.

Never prints except into the worker log; the CLI says what happened.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from engine.cluster.rendezvous import (
    NodeSpec,
    RankTaken,
    await_start,
    claim_rank,
    end_process_group,
    join_failure,
    post_failure,
    post_host,
    say_ready,
    torchrun_args,
)
from engine.core.config import RunConfig
from engine.core.errors import HubtuneError
from engine.launch.start import TORCHRUN_VARIABLES, launch_nodes, launch_processes, start_queued
from store import RunStore, StoreError, data_dir, run_dir

OUTCOME_FILE = "rank-{rank}.outcome.json"
"""Written into a node's folder by each of its ranks: the status, or the failure sentence."""
LOG_TAIL_BYTES = 64 << 10


def _torchrun(options: list[str], folder: Path, *target: str) -> list[str]:
    """The torchrun command line; its per-attempt folders go under the run's `folder`
    (left to itself, torchrun makes a `torchelastic_*` folder in /tmp per launch and
    never removes it)."""
    return [sys.executable, "-m", "torch.distributed.run", *options,
            "--log-dir", str(folder / "torchrun"), *target]


def _run_forwarding(command: list[str], **popen) -> int:
    """Run torchrun as a child, passing it the signals this process gets (a stop, a
    logout), and return its exit code."""
    proc = subprocess.Popen(command, **popen)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return proc.wait()


def _log_tail(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


# -- node 0 --------------------------------------------------------------------------


def launch(run_id: int, db_file: Path, lease: str, worker_args: list[str]) -> int:
    """Node 0 (or the one machine of a run of several processes): torchrun over
    engine.launch.worker. If the run never started (the nodes never met), record it as failed
    with one sentence saying who was missing; if a rank was killed by a signal, say so
    in the run's record in place of what rank 0 saw of it (no rank lives to say it)."""
    nodes = launch_nodes(run_id)
    spec = NodeSpec.from_dict(nodes, node_rank=0) if nodes is not None else None
    processes = launch_processes(run_id)
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARIABLES}
    options = (torchrun_args(spec, processes) if spec is not None
               else ["--standalone", f"--nproc-per-node={processes}"])
    code = _run_forwarding(_torchrun(options, run_dir(run_id), "-m", "engine.launch.worker",
                                     *worker_args), env=env)
    log = run_dir(run_id) / "worker.log"
    store = RunStore(db_file)
    try:
        run = store.get_run(run_id)
        killed = killed_rank(_log_tail(log)) if code != 0 else None
        if spec is not None and run.status == "queued" and run.lease == lease:
            # no rank 0 ever claimed it: the nodes never met
            error = join_failure(_log_tail(log), spec, str(log))
            store.add_event(run_id, error, "error", lease=lease)
            store.finish(run_id, "failed", error=error, lease=lease)
            start_queued(store, releasing=run.devices)
        elif killed is not None and run.lease == lease and _unexplained(run):
            error = f"{killed[1]}; see {log}."
            store.add_event(run_id, error, "error", lease=lease)
            store.finish(run_id, "failed", summary=run.summary, error=error, lease=lease)
    except StoreError as exc:  # deleted, or resumed by someone else meanwhile
        print(exc, file=sys.stderr)
    finally:
        store.close()
    return code


def _unexplained(run) -> bool:
    """A run whose record does not yet say why it ended: still running (rank 0 itself
    was killed), or failed with what rank 0 saw of a vanished peer."""
    if run.status in ("running", "queued"):
        return True
    return run.status == "failed" and (run.error or "").startswith(
        ("Internal error", "Another rank's process ended without a word"))


_ROOT_CAUSE = re.compile(r"Root Cause \(first observed failure\):.*?rank\s*:\s*(\d+).*?"
                         r"exitcode\s*:\s*(-?\d+)", re.DOTALL)


def killed_rank(log_text: str) -> tuple[int, str] | None:
    """From torchrun's failure summary: (the rank, a sentence) for a rank whose process a
    signal ended (SIGKILL is what the kernel's out-of-memory killer sends), else None."""
    found = _ROOT_CAUSE.findall(log_text)
    if not found:
        return None
    rank, code = int(found[-1][0]), int(found[-1][1])
    if code >= 0:  # an exit code, not a signal: the rank said why itself
        return None
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    if name == "SIGKILL":
        return rank, (f"Rank {rank} was killed by SIGKILL, as the kernel's out-of-memory "
                      "killer does; check the machine's memory (dmesg) and lower "
                      "train.batch_size, the number of processes or data workers")
    return rank, f"Rank {rank} was ended by {name}"


# -- nodes 1 and later ---------------------------------------------------------------


def prepare_node(cfg: RunConfig, spec: NodeSpec) -> Path:
    """A folder of this node's own, HUBTUNE_HOME/nodes/<time>-node<R>, with the config."""
    import yaml

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    folder = data_dir() / "nodes" / f"{stamp}-{os.getpid()}-node{spec.node_rank}"
    try:
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    except OSError as exc:
        raise HubtuneError(f"Cannot write this node's folder {folder} ({exc.strerror}); "
                           "check that HUBTUNE_HOME is a writable folder.") from None
    return folder


def run_node(folder: Path, spec: NodeSpec, processes: int) -> tuple[str, str | None]:
    """Nodes 1 and later, in the foreground: torchrun over this node's ranks until the
    run ends. Returns (status, the failure sentence or None)."""
    env = {k: v for k, v in os.environ.items()
           if k not in TORCHRUN_VARIABLES and not k.startswith("TORCHELASTIC_")}
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    log = folder / "worker.log"
    with open(log, "ab") as out:
        code = _run_forwarding(_torchrun(torchrun_args(spec, processes), folder,
                                         "-m", "engine.launch.nodes", "rank", str(folder)),
                               stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                               env=env)
    outcomes = []
    for path in sorted(folder.glob(OUTCOME_FILE.format(rank="*"))):
        try:
            outcomes.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    failed = [o for o in outcomes if o.get("status") == "failed"]
    killed = killed_rank(_log_tail(log)) if code != 0 else None
    if killed is not None:
        # No rank lived to say it: node 0 hears it from here, through its key-value store.
        rank, sentence = killed
        sentence = f"{sentence} on node {spec.node_rank}"
        post_failure(rank, f"{sentence} (see {log} there)", endpoint=spec.endpoint)
        return "failed", f"{sentence}; see {log}."
    if failed:
        if failed[0]["error"].startswith("Node rank "):  # taken: this node never joined
            return "failed", failed[0]["error"]
        return "failed", f"Rank {failed[0]['rank']} on node {spec.node_rank} failed: " \
                         f"{failed[0]['error']}"
    if not outcomes:  # no rank got as far as training
        return "failed", join_failure(_log_tail(log), spec, str(log))
    if code != 0:
        return "failed", (f"torchrun on node {spec.node_rank} ended with exit code {code}; "
                          f"see {log}.")
    return outcomes[0]["status"], None


def run_rank(folder: Path) -> int:
    """One rank on node 1 or later: trains its shard, writes only its outcome file."""
    import yaml

    rank = int(os.environ["RANK"])
    cfg = RunConfig.from_dict(yaml.safe_load((folder / "config.yaml").read_text()))
    try:
        return _train_rank(folder, rank, cfg)
    finally:  # completed, failed or stopped: leave the process group
        end_process_group()


def _train_rank(folder: Path, rank: int, cfg: RunConfig) -> int:
    try:
        claim_rank()  # first: a node rank already taken must not speak for the run
    except RankTaken as exc:
        return _outcome(folder, rank, "failed", str(exc), post=False)
    except Exception as exc:
        return _outcome(folder, rank, "failed", "Node 0 ended before training started "
                        f"({type(exc).__name__}); its run says why (`hubtune runs show`).",
                        post=False)
    try:
        post_host()
        resume_from = await_start()  # blocks until node 0's rank 0 holds the run
    except Exception as exc:  # node 0's torchrun, which holds the key-value store, ended
        return _outcome(folder, rank, "failed", "Node 0 ended before training started "
                        f"({type(exc).__name__}); its run says why (`hubtune runs show`).")
    if resume_from and not Path(resume_from, "model.safetensors").is_file():
        problem = (f"Node {os.environ.get('GROUP_RANK')} cannot read checkpoint {resume_from} "
                   "that node 0 resumes from; put HUBTUNE_HOME on a file system every node "
                   "shares to resume a multi-node run.")
        say_ready(problem)
        return _outcome(folder, rank, "failed", problem)
    say_ready()
    stop = threading.Event()  # rank 0 reads the stop request and shares it
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from engine.launch.worker import join_ranks
    from engine.training.loop import train

    try:
        join_ranks(cfg)
        outcome = train(cfg, lambda event: None, stop, out_dir=folder,
                        resume_from=Path(resume_from) if resume_from else None)
    except HubtuneError as exc:
        return _outcome(folder, rank, "failed", str(exc))
    except Exception as exc:
        traceback.print_exc()
        return _outcome(folder, rank, "failed", f"Internal error ({type(exc).__name__}: "
                                                f"{exc}); see {folder}/worker.log.")
    return _outcome(folder, rank, outcome.status, outcome.error)


def _outcome(folder: Path, rank: int, status: str, error: str | None, *,
             post: bool = True) -> int:
    """This rank's outcome into the node's folder; a failure also to node 0 (unless
    `post` is False: a rank that never joined the run must not fail it)."""
    path = folder / OUTCOME_FILE.format(rank=rank)
    path.write_text(json.dumps({"rank": rank, "status": status, "error": error}),
                    encoding="utf-8")
    if status == "failed" and error and post:
        post_failure(rank, f"{error} (on node {os.environ.get('GROUP_RANK', '?')})")
    return 0 if status in ("completed", "stopped") else 1


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["rank"] and len(args) == 2:
        return run_rank(Path(args[1]))
    if args[:1] == ["launch"] and len(args) >= 5 and args[3] == "--lease":
        return launch(int(args[1]), Path(args[2]), args[4], args[1:])
    print("usage: python -m engine.launch.nodes (launch RUN_ID DB --lease LEASE [worker options] "
          "| rank FOLDER)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    code = main()
    if sys.argv[1:2] == ["rank"]:
        # The rank has left its process group. The interpreter's teardown would run C++
        # static destructors, where a gloo thread still joinable aborts the process now
        # and then ("terminate called without an active exception", exit -6) after a
        # run that completed; leave as a one-process worker does.
        from engine.launch.worker import exit_now

        exit_now(code)
    sys.exit(code)
