"""A one-process worker ends without the interpreter's teardown (engine.launch.worker.exit_now),
which took about a second of CPU from the queued run it had just started: its exit code
stands, its exit handlers still run and its output is flushed. A plain Python subprocess
(engine.launch.worker imports neither torch nor transformers), well under a second."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import atexit, sys, threading, time
import engine.launch.worker as worker
atexit.register(lambda: print("exit handler ran", flush=True))
threading.Thread(target=lambda: (time.sleep(0.2), print("thread finished")), daemon=False).start()
sys.stdout.write("buffered, not flushed")
worker.exit_now(3)
"""


def testexit_now_keeps_the_code_the_handlers_the_threads_and_the_output():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 3, out.stderr
    assert "buffered, not flushed" in out.stdout
    assert "thread finished" in out.stdout and "exit handler ran" in out.stdout
    assert out.stdout.index("thread finished") < out.stdout.index("exit handler ran")
