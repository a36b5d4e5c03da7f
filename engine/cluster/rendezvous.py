"""Several machines: how torchrun's rendezvous is asked for, what its failures mean, and
what the ranks tell each other before training.

The nodes meet through torchrun's *static* rendezvous: node `--node-rank R` hosts global
ranks R*P .. R*P+P-1, so node 0's first process is global rank 0, the one store writer.
(c10d's dynamic rendezvous numbers the nodes by their sorted host names instead, so node
0 could come out as rank 1.) Node 0's torchrun hosts a small key-value store (TCPStore)
at the endpoint; before training, the ranks use it to gather each node's host and to
hand the other nodes the checkpoint node 0 resumes from.

Torch-free at import (the CLI validates a NodeSpec); torch only inside the functions
the ranks call. Never touches the store.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass

from engine.core.errors import HubtuneError

DEFAULT_JOIN_TIMEOUT_S = 300
"""How long node 0 waits for every node to join before the run fails."""
EXCHANGE_TIMEOUT_S = 3600
"""How long a rank waits for another's word before training (node 0 may be checking a
large checkpoint); a node that dies ends the wait at once, its store closing."""
START_KEY = "hubtune/start"
HOST_KEY = "hubtune/host/{node}"
READY_KEY = "hubtune/ready/{rank}"


@dataclass(frozen=True)
class NodeSpec:
    """Where this node fits in a multi-node run: the same on every node but `node_rank`."""

    nnodes: int
    """How many machines train the run."""
    node_rank: int
    """This machine's place, 0 .. nnodes-1; node 0 records the run."""
    endpoint: str
    """HOST:PORT of node 0, where the nodes meet (torchrun's rendezvous endpoint)."""
    join_timeout_s: int = DEFAULT_JOIN_TIMEOUT_S
    """How long the nodes wait for each other before the run fails."""

    def __post_init__(self) -> None:
        if self.nnodes < 2:
            raise HubtuneError(f"--nnodes {self.nnodes} is not several machines; give 2 or "
                               "more, or leave out --nnodes for one machine.")
        if not 0 <= self.node_rank < self.nnodes:
            raise HubtuneError(f"--node-rank {self.node_rank} is outside 0..{self.nnodes - 1} "
                               f"for --nnodes {self.nnodes}; number the nodes from 0.")
        host, _, port = self.endpoint.rpartition(":")
        if (not _HOST.fullmatch(host) or not port.isascii() or not port.isdigit()
                or not 0 < int(port) < 65536):
            raise HubtuneError(f"--rdzv-endpoint {self.endpoint!r} is not HOST:PORT; give node "
                               "0's address and a free port, e.g. node0.cluster:29500.")
        if self.join_timeout_s < 1:
            raise HubtuneError(f"--join-timeout {self.join_timeout_s} must be 1 second or "
                               "more.")

    @property
    def host(self) -> str:
        return self.endpoint.rpartition(":")[0]

    def to_dict(self) -> dict:
        return {"nnodes": self.nnodes, "endpoint": self.endpoint,
                "join_timeout_s": self.join_timeout_s}

    @classmethod
    def from_dict(cls, data: dict, node_rank: int = 0) -> NodeSpec:
        return cls(int(data["nnodes"]), node_rank, str(data["endpoint"]),
                   int(data.get("join_timeout_s", DEFAULT_JOIN_TIMEOUT_S)))


_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\]")
"""A host name, an IPv4 address or a bracketed IPv6 one: nothing that could start an
option, hold a space or a newline, or name something other than a host."""


def torchrun_args(spec: NodeSpec, processes: int) -> list[str]:
    """torchrun's options for this node: static rendezvous at the endpoint, no restarts
    (a restarted node would train from step 0 beside the others)."""
    return ["--nnodes", str(spec.nnodes), "--node-rank", str(spec.node_rank),
            f"--nproc-per-node={processes}", "--rdzv-backend", "static",
            f"--rdzv-endpoint={spec.endpoint}", "--rdzv-conf", f"timeout={spec.join_timeout_s}",
            "--max-restarts", "0"]


_JOINED = re.compile(r"waiting for clients\. (\d+)/(\d+) clients joined")
_UNREACHABLE = re.compile(r"timed out after \d+ms while trying to connect to|"
                          r"Connection refused|failed to connect", re.IGNORECASE)


def join_failure(log_text: str, spec: NodeSpec, log: str) -> str:
    """One sentence for a launch that ended before training: who never joined, or whom
    this node could not reach."""
    found = _JOINED.findall(log_text)
    if found and spec.node_rank == 0:
        arrived, wanted = found[-1]
        return (f"Only {arrived} of {wanted} nodes joined the rendezvous at {spec.endpoint} "
                f"within {spec.join_timeout_s} s; start the same command on every node "
                f"(--node-rank 1 to {spec.nnodes - 1}) and check that they can reach that "
                "host and port.")
    if _UNREACHABLE.search(log_text) and spec.node_rank > 0:
        return (f"Node {spec.node_rank} could not reach node 0 at {spec.endpoint} within "
                f"{spec.join_timeout_s} s; start node 0's command too and check the "
                "endpoint's host, port and firewall.")
    return (f"Not all {spec.nnodes} nodes met at {spec.endpoint} before training started; "
            f"see {log} for torchrun's reason.")


def _agent_store(timeout_s: float = EXCHANGE_TIMEOUT_S, endpoint: str | None = None):
    """A client of the key-value store node 0's torchrun hosts (MASTER_ADDR:MASTER_PORT in
    a rank, the rendezvous `endpoint` outside one)."""
    from datetime import timedelta

    from torch.distributed import TCPStore

    if endpoint is not None:
        host, _, port = endpoint.rpartition(":")
    else:
        host, port = os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]
    return TCPStore(host, int(port), is_master=False, timeout=timedelta(seconds=timeout_s))


def node_count() -> int:
    """Machines in this torchrun launch (1 outside torchrun or with --standalone)."""
    return max(int(os.environ.get("GROUP_WORLD_SIZE", "1")), 1)


def post_host() -> None:
    """Each node's first process says which host it is (rank 0 records them)."""
    if node_count() > 1 and os.environ.get("LOCAL_RANK", "0") == "0":
        _agent_store().set(HOST_KEY.format(node=os.environ.get("GROUP_RANK", "0")),
                           socket.gethostname())


def distributed_environment() -> dict:
    """What rank 0 records in the run's env: world size, node count and, across
    machines, each node's host and the endpoint (the SLURM job id under SLURM)."""
    env = {"world_size": int(os.environ.get("WORLD_SIZE", "1")), "nnodes": node_count()}
    if os.environ.get("SLURM_JOB_ID"):
        env["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    if env["nnodes"] > 1:
        post_host()
        store = _agent_store(120)
        keys = [HOST_KEY.format(node=n) for n in range(env["nnodes"])]
        try:
            store.wait(keys)
            env["node_hosts"] = [store.get(k).decode() for k in keys]
        except Exception:  # a node that never says: training will find it missing too
            env["node_hosts"] = [store.get(k).decode() if store.check([k]) else None
                                 for k in keys]
        env["rdzv_endpoint"] = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    return env


def share_start(resume_from: str | None) -> str | None:
    """Rank 0, once it holds the run: tell the other nodes' ranks which checkpoint (if
    any) to start from, and wait for each to say it can. Returns the first one's
    problem as a sentence, or None (also on one machine, where there is nothing to do)."""
    if node_count() <= 1:
        return None
    store = _agent_store()
    store.set(START_KEY, json.dumps({"resume_from": resume_from}))
    local, world = int(os.environ["LOCAL_WORLD_SIZE"]), int(os.environ["WORLD_SIZE"])
    for rank in range(local, world):  # the ranks on the other nodes
        problem = store.get(READY_KEY.format(rank=rank)).decode()
        if problem:
            return problem
    return None


def await_start() -> str | None:
    """A rank on node 1 or later: the checkpoint node 0 resumes from (None for a new
    run), once node 0's rank 0 has claimed the run."""
    return json.loads(_agent_store().get(START_KEY))["resume_from"]


def say_ready(problem: str = "") -> None:
    """A rank on node 1 or later: empty when it can start, else why not (a sentence)."""
    _agent_store().set(READY_KEY.format(rank=os.environ["RANK"]), problem)


# -- the process group and what the ranks agree on before the first step ------------

PROCESS_GROUP_TIMEOUT_S = 3600
"""How long a collective waits for every rank. NCCL's default (10 minutes) is shorter than
rank 0 may spend writing a large checkpoint and waiting for the store to commit it while
the other ranks wait for it in a barrier; a dead peer is found sooner anyway (its socket
closes, or the worker's watch of failed ranks ends the wait)."""
RANK_KEY = "hubtune/rank/{rank}"
FAILED_KEY = "hubtune/failed/{rank}"
FAILED_COUNT_KEY = "hubtune/failed-count"


def world_size() -> int:
    return max(int(os.environ.get("WORLD_SIZE", "1")), 1)


def start_process_group() -> bool:
    """Join the ranks' process group once per process, with `PROCESS_GROUP_TIMEOUT_S`;
    accelerate then uses it as it is. Across machines the rank is claimed first, so a
    second machine started with a node rank already in use is told so. False outside a
    launch of several processes."""
    if world_size() <= 1:
        return False
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return True
    claim_rank()
    from datetime import timedelta

    cuda = torch.cuda.is_available()
    if cuda:  # the device accelerate picks too: NCCL binds to the current one
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    dist.init_process_group("nccl" if cuda else "gloo",
                            timeout=timedelta(seconds=PROCESS_GROUP_TIMEOUT_S))
    return True


def end_process_group() -> None:
    """Leave the process group, whatever the run's end (a rank that left without it can
    keep NCCL's watchdog and sockets busy until the process is killed). Never raises."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # a peer already gone: there is nothing left to release cleanly
        pass


class RankTaken(HubtuneError):
    """Another machine holds this node rank: this node must not speak for the run."""


def claim_rank() -> None:
    """Across machines: take this process's global rank in node 0's key-value store, or
    fail with a sentence naming the machine that holds it (two nodes given the same
    --node-rank would otherwise meet as one rank and fail deep inside gloo or NCCL)."""
    if node_count() <= 1:
        return
    me = f"{socket.gethostname()} (pid {os.getpid()})"
    held = _agent_store(120).compare_set(RANK_KEY.format(rank=os.environ["RANK"]), "",
                                         me).decode()
    if held != me:
        node = os.environ.get("GROUP_RANK", "?")
        raise RankTaken(f"Node rank {node} is already taken by {held}; give each machine its "
                        f"own --node-rank from 0 to {node_count() - 1}.")


def differs_from(rank: int, node: int) -> tuple[str, str]:
    """("Node 1's", "node 0's") across machines, ("Rank 1's", "rank 0's") on one."""
    if node_count() > 1:
        return f"Node {node}'s", "node 0's"
    return f"Rank {rank}'s", "rank 0's"


def gather_digests(digest: dict) -> list[dict]:
    """Every rank's `digest` (small, picklable), in rank order, on every rank."""
    import torch.distributed as dist

    found: list = [None] * dist.get_world_size()
    dist.all_gather_object(found, {**digest, "node": int(os.environ.get("GROUP_RANK", "0"))})
    return found


def check_same_run(config: dict) -> None:
    """Before anything loads: every rank runs the same config and the same hubtune code,
    or every rank fails with one sentence naming the first difference from rank 0's.

    Local data files are left out of the config comparison (machines may mount them at
    different paths); the data itself is compared once read (engine.training.ranks)."""
    if world_size() <= 1:
        return
    found = gather_digests({"config": _comparable(config), "code": code_version()})
    first = found[0]
    for rank, other in enumerate(found[1:], start=1):
        who, whose = differs_from(rank, other["node"])
        if other["code"] != first["code"]:
            raise HubtuneError(
                f"{who} hubtune code differs from {whose} ({other['code']} against "
                f"{first['code']}); install the same hubtune on every machine.")
        keys = sorted(set(first["config"]) | set(other["config"]))
        differing = [k for k in keys if first["config"].get(k) != other["config"].get(k)]
        if differing:
            key = differing[0]
            more = f" (and {len(differing) - 1} more)" if len(differing) > 1 else ""
            raise HubtuneError(
                f"{who} config differs from {whose} in {key}{more}: "
                f"{other['config'].get(key, 'nothing')} against "
                f"{first['config'].get(key, 'nothing')}; start "
                "every node with the same config and --set values.")


def _comparable(config: dict, prefix: str = "") -> dict:
    """The config as dotted keys, local data paths left out."""
    flat: dict = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_comparable(value, f"{name}."))
        elif name in ("data.train", "data.validation") and isinstance(value, str) \
                and not value.startswith("hf:"):
            continue
        else:
            flat[name] = json.dumps(value, sort_keys=True, default=str)
    return flat


def code_version() -> str:
    """hubtune's version and a hash of the engine's source: what every node must share."""
    import hashlib
    from importlib import metadata
    from pathlib import Path

    try:
        version = metadata.version("hubtune")
    except metadata.PackageNotFoundError:
        version = "source"
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return f"hubtune {version}, engine {digest.hexdigest()[:12]}"


# -- failures that reach node 0 from the other machines -----------------------------


def post_failure(rank: int, error: str, summary: dict | None = None, *,
                 endpoint: str | None = None) -> None:
    """A rank on another machine failed: leave its reason in node 0's key-value store,
    where rank 0 reads it for the run's record. From a rank, or from outside torchrun
    with the rendezvous `endpoint`. Never raises (node 0 may be gone)."""
    if endpoint is None and node_count() <= 1:
        return
    try:
        store = _agent_store(10, endpoint)
        store.set(FAILED_KEY.format(rank=rank), json.dumps({"rank": rank, "error": error,
                                                            "summary": summary or {}}))
        store.add(FAILED_COUNT_KEY, 1)
    except Exception:
        pass


def posted_failure() -> dict | None:
    """The failure another machine's rank posted ({"rank", "error", "summary"}), the lowest
    rank first; None when none did (or on one machine)."""
    if node_count() <= 1:
        return None
    try:
        store = _agent_store(10)
        if store.add(FAILED_COUNT_KEY, 0) == 0:
            return None
        for rank in range(world_size()):
            key = FAILED_KEY.format(rank=rank)
            if store.check([key]):
                return json.loads(store.get(key))
    except Exception:  # node 0's torchrun is ending: nothing more to read
        return None
    return None
