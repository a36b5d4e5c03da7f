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
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
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


def torchrun_args(spec: NodeSpec, processes: int) -> list[str]:
    """torchrun's options for this node: static rendezvous at the endpoint, no restarts
    (a restarted node would train from step 0 beside the others)."""
    return ["--nnodes", str(spec.nnodes), "--node-rank", str(spec.node_rank),
            f"--nproc-per-node={processes}", "--rdzv-backend", "static",
            "--rdzv-endpoint", spec.endpoint, "--rdzv-conf", f"timeout={spec.join_timeout_s}",
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


def _agent_store(timeout_s: float = EXCHANGE_TIMEOUT_S):
    """A client of the key-value store node 0's torchrun hosts (MASTER_ADDR:MASTER_PORT)."""
    from datetime import timedelta

    from torch.distributed import TCPStore

    return TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                    is_master=False, timeout=timedelta(seconds=timeout_s))


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
