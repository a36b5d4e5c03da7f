"""A real OpenSSH server on loopback for the remote tests: key-only, in a temporary
folder, on a free port, logging in as the user running the tests. The client side is
the system `ssh`, pointed at it through HUBTUNE_SSH_COMMAND (with its own key and
known-hosts file), exactly as a user's ~/.ssh/config would."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
SSH = shutil.which("ssh")


@dataclass
class Sshd:
    port: int
    user: str
    ssh_command: str
    """What HUBTUNE_SSH_COMMAND is set to: ssh with this server's key and known hosts."""
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sshd(folder: Path) -> Sshd | None:
    """The server, or None where this machine cannot run one (say why with skip)."""
    if SSHD is None or SSH is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(folder / key)], check=True)
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    os.chmod(folder / "authorized_keys", 0o600)
    port = free_port()
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        f"PidFile {folder / 'sshd.pid'}\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # its privilege separation directory
    with open(folder / "sshd.log", "wb") as log:  # the child keeps its own copy
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")],
                                stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:  # it could not start (its reason is in sshd.log)
            return None
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        proc.wait()
        return None
    command = (f"{SSH} -i {folder / 'client_key'} -o StrictHostKeyChecking=no "
               f"-o UserKnownHostsFile={folder / 'known_hosts'} -o LogLevel=ERROR "
               "-o IdentitiesOnly=yes")
    return Sshd(port, getpass.getuser(), command, proc)


def kill_clients(server: Sshd) -> int:
    """End the ssh clients that talk to `server`'s `hubtune serve` (their command line
    names its client key), as a dropped connection would; returns how many."""
    import signal

    key = server.ssh_command.split(" -i ")[1].split()[0].encode()
    killed = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if key in cmdline and b"serve" in cmdline and b"ssh" in cmdline.split(b"\0")[0]:
            os.kill(int(pid), signal.SIGKILL)
            killed += 1
    return killed
