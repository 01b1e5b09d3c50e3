"""Run a command and measure its peak RSS without the test process's own: a small fresh Python starts it and
reports ``RUSAGE_CHILDREN`` (wait4's rusage, as /usr/bin/time does). A child forked straight from pytest
would count pytest's resident memory at the fork in its own ``ru_maxrss``."""

import json
import subprocess
import sys

PARENT = """import json, resource, subprocess, sys
args = json.loads(sys.argv[1])
stdin = open(args["stdin"], "rb") if args["stdin"] else subprocess.DEVNULL
p = subprocess.run(args["cmd"], stdin=stdin, capture_output=True, cwd=args["cwd"])
sys.stdout.write(json.dumps({"code": p.returncode, "out": p.stdout.decode(errors="replace"),
                             "err": p.stderr.decode(errors="replace"),
                             "kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def run_measured(*args, stdin=None, cwd=None, timeout=600):
    """``python -m nnctl ARGS`` -> (exit code, stdout, stderr, peak RSS in MiB)."""
    task = {
        "cmd": [sys.executable, "-m", "nnctl", *map(str, args)],
        "stdin": str(stdin) if stdin else None,
        "cwd": str(cwd) if cwd else None,
    }
    p = subprocess.run(
        [sys.executable, "-c", PARENT, json.dumps(task)], capture_output=True, text=True, timeout=timeout
    )
    got = json.loads(p.stdout)
    return got["code"], got["out"], got["err"], got["kb"] // 1024
