"""Many processes at once, and processes killed mid-write: the registry stays consistent.

Every child is a separate Python process (the registry is shared only through the SQLite file). Children
wait at a barrier (a file appearing) so they hit the database together.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prefgate.registry import Registry

from .conftest import Build, sha256_of

N_RACERS = 20

_BARRIER = """
import os, sys, time
from pathlib import Path
def barrier(go):
    Path(f"{go}.{os.getpid()}").touch()
    while not os.path.exists(go):
        time.sleep(0.001)
"""

_PROMOTE_VIA_API = _BARRIER + """
from prefgate.registry import PromotionRefused, Registry
run_id, gate, go = sys.argv[1:4]
reg = Registry()
barrier(go)
try:
    print(reg.promote(run_id, "prod", gate)["run_id"])
except PromotionRefused as err:
    print(f"refused: {err}")
    sys.exit(1)
"""

_PROMOTE_VIA_CLI = _BARRIER + """
from prefgate.commands.registry import app
run_id, go = sys.argv[1:3]
barrier(go)
app(["promote", run_id, "--alias", "prod", "--force", "--reason", f"race {run_id}"])
"""

_ADD_VIA_API = _BARRIER + """
from prefgate.registry import Registry
run_dir, eval_path, go = sys.argv[1:4]
barrier(go)
Registry().add(run_dir, evals=[eval_path])
"""


def _race(tmp_path: Path, code: str, arg_lists: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Start one process per argument list, release them together, wait for all."""
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", code, *args, str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path) for args in arg_lists]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("go.*"))) < len(procs) and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break  # a child died before the barrier: report it below
        time.sleep(0.01)
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results


def _runs_with_evals(build, reg: Registry, n: int, prefix: str) -> list[tuple[str, Path]]:
    out = []
    for i in range(n):
        run_dir = build.run(f"{prefix}-{i:02d}")
        ev = build.eval(f"{prefix}-{i:02d}", str(run_dir), score=0.8 + i / 1000)
        reg.add(run_dir, evals=[ev])
        out.append((run_dir.name, ev))
    return out


def _assert_consistent(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.execute("PRAGMA foreign_keys = ON")
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        incomplete = conn.execute(
            "SELECT r.run_id FROM runs r WHERE r.n_artifacts != (SELECT COUNT(*) FROM artifacts a "
            "WHERE a.run_id = r.run_id) OR NOT EXISTS (SELECT 1 FROM run_datasets d WHERE d.run_id = r.run_id "
            "AND d.role = 'train')").fetchall()
        assert incomplete == []
        orphans = conn.execute("SELECT COUNT(*) FROM alias_history h WHERE NOT EXISTS "
                               "(SELECT 1 FROM runs r WHERE r.run_id = h.run_id)").fetchone()[0]
        assert orphans == 0


# ---------------------------------------------------------------------------------------------------------
# races


@pytest.mark.slow
def test_twenty_gated_promoters_race_and_exactly_one_wins(prod, build, reg, tmp_path):
    """Every racer holds a passing gate against A's eval; once one of them holds `prod`, the others' gates
    compare against the wrong holder, and each re-checks the holder under the lock."""
    racers = _runs_with_evals(build, reg, N_RACERS, "racer")
    args = [[run_id, str(build.gate(f"A-vs-{run_id}", prod["A"]["eval"], ev))] for run_id, ev in racers]
    results = _race(tmp_path, _PROMOTE_VIA_API, args)

    winners = [r for r in results if r.returncode == 0]
    assert len(winners) == 1, [(r.returncode, r.stdout, r.stderr) for r in results]
    winner = winners[0].stdout.strip()
    for r in results:
        if r.returncode != 0:
            assert r.returncode == 1 and r.stderr == "", r.stderr  # a refusal, never "database is locked"
            assert f"is not an eval of {winner}, the current holder of 'prod'" in r.stdout
    rows = reg.history("prod")
    assert [(r["run_id"], r["previous_run_id"]) for r in rows] == [(prod["A"]["id"], None), (winner, prod["A"]["id"])]
    assert rows[1]["candidate_eval_sha256"] == sha256_of(dict(racers)[winner])
    assert reg.holder("prod") == winner
    _assert_consistent(reg.db_path)


@pytest.mark.slow
def test_twenty_forced_promoters_through_the_cli_leave_a_complete_chain(prod, build, reg, tmp_path):
    """Every racer overrides: all 20 succeed, one after another, and the history is one unbroken chain."""
    racers = [run_id for run_id, _ in _runs_with_evals(build, reg, N_RACERS, "forced")]
    results = _race(tmp_path, _PROMOTE_VIA_CLI, [[run_id] for run_id in racers])
    assert all(r.returncode == 0 for r in results), [(r.returncode, r.stderr) for r in results]

    rows = reg.history("prod")
    assert [r["seq"] for r in rows] == list(range(1, N_RACERS + 2))
    assert rows[0]["run_id"] == prod["A"]["id"]
    assert sorted(r["run_id"] for r in rows[1:]) == sorted(racers)  # each racer exactly once
    for before, row in zip(rows, rows[1:], strict=False):
        assert row["previous_run_id"] == before["run_id"]  # nobody overwrote a holder it did not see
        assert row["forced"] and row["reason"] == f"race {row['run_id']}"
        assert row["overridden"] == "no gate report was given"
    assert reg.holder("prod") == rows[-1]["run_id"]
    _assert_consistent(reg.db_path)


@pytest.mark.slow
def test_twenty_processes_creating_and_filling_a_fresh_registry(build, tmp_path, home):
    """The first open of a fresh database (WAL switch and migration) and the adds race too."""
    assert not home.exists()
    args = []
    for i in range(N_RACERS):
        run_dir = build.run(f"fresh-{i:02d}")
        args.append([str(run_dir), str(build.eval(f"fresh-{i:02d}", str(run_dir)))])
    results = _race(tmp_path, _ADD_VIA_API, args)
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]

    reg = Registry()
    assert len(reg.list()) == N_RACERS and all(r["n_evals"] == 1 for r in reg.list())
    with sqlite3.connect(reg.db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1
    _assert_consistent(reg.db_path)


# ---------------------------------------------------------------------------------------------------------
# SIGKILL


_KILLED_INSIDE = """
import sys, time
import prefgate.registry.api as api
step, run_dir, eval_path, gate = sys.argv[1:5]
original = getattr(api, step)
def stalled(*args, **kwargs):
    out = original(*args, **kwargs)   # rows written, transaction still open
    print("inside", flush=True)
    time.sleep(60)
    return out
setattr(api, step, stalled)
reg = api.Registry()
if step == "_insert_artifacts":
    reg.add(run_dir, evals=[eval_path])
else:
    reg.promote("killed-run", "prod", gate)
"""


@pytest.mark.parametrize("step", ["_insert_artifacts", "_append"])
def test_a_process_killed_inside_a_write_leaves_no_trace_and_no_lock(prod, build, reg, tmp_path, step):
    """SIGKILL while an add (or a promotion) holds the write lock with rows written but not committed."""
    run_dir = build.run("killed-run")
    ev = build.eval("killed", str(run_dir))
    if step == "_append":
        reg.add(run_dir, evals=[ev])
    gate = build.gate("A-vs-killed", prod["A"]["eval"], ev)
    before = (reg.list(), reg.history("prod"))
    child = subprocess.Popen([sys.executable, "-c", _KILLED_INSIDE, step, str(run_dir), str(ev), str(gate)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    assert child.stdout.readline().strip() == "inside", child.stderr.read()
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL

    _assert_consistent(reg.db_path)
    assert (reg.list(), reg.history("prod")) == before  # the half-written transaction is gone
    started = time.monotonic()
    if step == "_insert_artifacts":
        assert reg.add(run_dir, evals=[ev])["outcome"] == "added"
    reg.promote("killed-run", "prod", gate)  # the dead process's lock is gone too: no wait
    assert time.monotonic() - started < 5
    assert reg.holder("prod") == "killed-run" and reg.verify()["ok"]


_ADD_FOREVER = """
import sys
from pathlib import Path
from prefgate.registry import Registry
reg = Registry()
for i, run_dir in enumerate(sorted(Path(sys.argv[1]).iterdir())):
    reg.add(run_dir, evals=[Path(sys.argv[2]) / f"{run_dir.name}.json"])
    print(i, flush=True)
"""


@pytest.mark.slow
def test_processes_killed_at_random_moments_while_adding_leave_a_consistent_registry(prod, build, reg, tmp_path):
    rng = random.Random(0)
    for round_ in range(5):
        batch = Build(tmp_path / f"round{round_}")
        for i in range(60):
            batch.eval(f"round{round_}-{i:03d}", str(batch.run(f"round{round_}-{i:03d}")))
        child = subprocess.Popen([sys.executable, "-c", _ADD_FOREVER, str(batch.root / "runs"),
                                  str(batch.root / "evals")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, cwd=tmp_path)
        committed = rng.randint(5, 40)
        for _ in range(committed):  # wait until that many adds have committed, then kill at a random moment
            assert child.stdout.readline() != "", child.stderr.read()
        time.sleep(rng.uniform(0.0, 0.005))  # an add takes a few milliseconds
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)

        _assert_consistent(reg.db_path)
        added = [r for r in reg.list() if r["run_id"].startswith(f"round{round_}-")]
        assert committed <= len(added) < 60  # killed part-way
        assert all(r["n_evals"] == 1 for r in added)  # each add landed whole: run, datasets, artifacts, eval
    assert reg.verify()["ok"] and reg.holder("prod") == prod["A"]["id"]
    reg.promote(prod["B"]["id"], "prod", build.gate("A-vs-B", prod["A"]["eval"], prod["B"]["eval"]))
    assert reg.holder("prod") == prod["B"]["id"]
