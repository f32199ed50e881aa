"""The CLI starts without the heavy libraries: `prefgate --help` and the registry's commands import neither
torch nor scipy (each costs a second or more per start; BENCHMARKS.md has the figures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "scipy", "transformers", "numpy")

_RUN = """
import json, sys
from prefgate.cli import app
try:
    app(sys.argv[1:])
except SystemExit as done:
    code = done.code
print(json.dumps({"code": code, "loaded": [m for m in HEAVY if m in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))


def _loaded_after(args: list[str], home) -> dict:
    out = subprocess.run([sys.executable, "-c", _RUN, *args], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PREFGATE_HOME": str(home)})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["registry", "--help"], ["registry", "list"], ["registry", "verify"],
                                  ["registry", "list", "--json"], ["registry", "history", "prod"],
                                  ["registry", "show", "nope"]])
def test_help_and_registry_commands_import_neither_torch_nor_scipy(args, tmp_path):
    result = _loaded_after(args, tmp_path / "home")
    assert result["code"] in (0, 2)  # history/show of nothing: bad input, still without the heavy imports
    assert not {"torch", "scipy"} & set(result["loaded"]), result
    assert not {"transformers", "numpy"} & set(result["loaded"]), result  # nor these, today (pydantic: typer's own)
