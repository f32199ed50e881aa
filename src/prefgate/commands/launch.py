"""Did `accelerate launch` start fewer processes than it was asked for? (`prefgate train` refuses to run then.)

`accelerate launch --cpu --num_processes 2 -m prefgate train ...` starts several CPU processes only through MPI
(with `--mpirun_hostfile`); otherwise its "simple launcher" starts one process, and the run would silently train
at half the global batch (a quarter at 4, ...). The same happens on a machine with one GPU without
`--multi_gpu`. That one process is recognisable: the simple launcher exports MASTER_ADDR/MASTER_PORT only when
more than one process was asked for, and sets the ACCELERATE_* variables, yet no launcher set a WORLD_SIZE
(torchrun) or an MPI size. The requested count itself is not exported; it is read from the launcher's command
line (/proc/PPID/cmdline on Linux) where possible, for the message only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

__all__ = ["CPU_COMMAND", "launch_mismatch", "requested_processes"]

# How several CPU processes are started without MPI: torchrun underneath, gloo (docs/train.md).
CPU_COMMAND = "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N -m prefgate train CONFIG"

_WORLD_SIZES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def requested_processes(launcher_args: Sequence[str]) -> int | None:
    """N of `--num_processes N` (or `--num-processes=N`) in an `accelerate launch` command line, else None."""
    for i, word in enumerate(launcher_args):
        name, eq, value = word.partition("=")
        if name not in ("--num_processes", "--num-processes"):
            continue
        value = value if eq else (launcher_args[i + 1] if i + 1 < len(launcher_args) else "")
        return int(value) if value.isdigit() else None
    return None


def _parent_args() -> list[str]:
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as fh:
            return [part.decode(errors="replace") for part in fh.read().split(b"\0") if part]
    except OSError:
        return []


def launch_mismatch(environ: Mapping[str, str] | None = None, launcher_args: Sequence[str] | None = None) -> str | None:
    """One line saying what went wrong and the command that works, when `accelerate launch` was asked for
    several processes but started only this one; None otherwise (also when not launched by accelerate)."""
    env = os.environ if environ is None else environ
    by_accelerate = "ACCELERATE_MIXED_PRECISION" in env and "ACCELERATE_DYNAMO_BACKEND" in env
    asked_for_several = "MASTER_ADDR" in env and "MASTER_PORT" in env
    if not (by_accelerate and asked_for_several) or any(name in env for name in _WORLD_SIZES):
        return None
    asked = requested_processes(_parent_args() if launcher_args is None else launcher_args)
    count = f"{asked} processes" if asked else "several processes"
    cpu = env.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    command = CPU_COMMAND.replace(" N ", f" {asked} ") if asked else CPU_COMMAND
    how = (f"on CPUs without MPI, run `{command}`" if cpu else
           "add --multi_gpu (and one GPU per process), or drop --num_processes to train in one process")
    return (f"accelerate launch was asked for {count} but started only this one (its simple launcher, "
            f"{'--cpu without --mpirun_hostfile' if cpu else 'no --multi_gpu'}), so the global batch would "
            f"silently shrink; {how} (docs/train.md)")
