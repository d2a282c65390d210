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
import tempfile

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


#: The zygote: imports galcat's writers once, then forks one child per step. A child
#: patches the file-system calls as `_PRELUDE` does and runs the body; nothing of galcat
#: binds these calls at import (they are looked up on os, shutil and io when called), so
#: a child counts the same steps as a fresh interpreter, without its ~1 s of imports.
_ZYGOTE = r"""
import json, os, sys, traceback
import numpy, pandas, galcat.store, galcat.tables, galcat.catalogue
body = json.loads(sys.stdin.readline())
for line in sys.stdin:
    step, args_json, err = json.loads(line)
    pid = os.fork()
    if pid == 0:
        fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 2)
        code = 0
        try:
            sys.argv = ["-c", str(step), args_json]
            exec(compile(PRELUDE + body, "<killed>", "exec"), {"__name__": "__main__"})
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""


def kill_at_every_step(body: str, args: dict, check, *, max_steps: int = 400) -> int:
    """Kill ``body`` at step 1, 2, ... and call ``check(step)`` after each death, until
    it runs to the end (then ``check(None)``); the number of steps killed."""
    zygote = subprocess.Popen(
        [sys.executable, "-c", f"PRELUDE = {_PRELUDE!r}\n" + _ZYGOTE],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            err = f"{tmp}/stderr"
            zygote.stdin.write(json.dumps(body) + "\n")
            for step in range(1, max_steps):
                zygote.stdin.write(json.dumps([step, json.dumps(args), err]) + "\n")
                zygote.stdin.flush()
                code = int(zygote.stdout.readline())
                if code == 0:
                    check(None)
                    return step - 1
                with open(err) as f:
                    assert code == 137, f.read()[-3000:]
                check(step)
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=60)
    raise AssertionError(f"the write did not finish within {max_steps} steps")
