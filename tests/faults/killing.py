"""Run galcat code in a subprocess that dies at its k-th file-system step.

The subprocess counts the steps a writer takes (opening a file for writing, renaming,
linking, removing a tree) and calls ``os._exit(137)`` at step ``k``: as after SIGKILL,
no ``finally`` or ``except`` runs. Looping k = 1, 2, ... kills a write at every point
until it completes, deterministically.
"""

from __future__ import annotations

import json
import subprocess
import sys

#: Prelude of the subprocess: the step counter and the patched file-system calls.
_PRELUDE = r"""
import builtins, io, os, pathlib, shutil, sys
_step, _limit = [0], int(sys.argv[1])
def _dies(fn, writes_only=False):
    def at_step(*args, **kwargs):
        mode = args[1] if len(args) > 1 else kwargs.get("mode", "r")
        if not writes_only or any(c in str(mode) for c in "wax+"):
            _step[0] += 1
            if _step[0] == _limit:
                os._exit(137)
        return fn(*args, **kwargs)
    return at_step
builtins.open = _dies(builtins.open, writes_only=True)
io.open = builtins.open
os.replace, os.rename, os.symlink = _dies(os.replace), _dies(os.rename), _dies(os.symlink)
shutil.copy2, shutil.rmtree = _dies(shutil.copy2), _dies(shutil.rmtree)
args = __import__("json").loads(sys.argv[2])
"""


def run_killed_at(step: int, body: str, args: dict, *, limit_file_bytes: int | None = None
                  ) -> subprocess.CompletedProcess:
    """Run ``body`` (Python, with ``args`` in scope) dying at file-system ``step`` (0:
    never). ``limit_file_bytes`` caps the size of any file written (a full disk: the
    write fails with EFBIG instead of killing the process)."""
    prelude = _PRELUDE
    if limit_file_bytes is not None:
        prelude += (
            "import resource, signal\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_file_bytes}, "
            f"{limit_file_bytes}))\n"
        )
    return subprocess.run([sys.executable, "-c", prelude + body, str(step), json.dumps(args)],
                          capture_output=True, text=True)


def kill_at_every_step(body: str, args: dict, check, *, max_steps: int = 400) -> int:
    """Kill ``body`` at step 1, 2, ... and call ``check(step)`` after each death, until
    it runs to the end (then ``check(None)``); the number of steps killed."""
    for step in range(1, max_steps):
        proc = run_killed_at(step, body, args)
        if proc.returncode == 0:
            check(None)
            return step - 1
        assert proc.returncode == 137, proc.stderr[-3000:]
        check(step)
    raise AssertionError(f"the write did not finish within {max_steps} steps")
