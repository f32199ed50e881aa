"""`Registry`: the Python API behind `prefgate registry ...`. Every method returns plain JSON-serialisable
dicts; bad input raises `InputError` (CLI exit 2); a refusal raises `PromotionRefused` (CLI exit 1).

Concurrency: each call opens its own connection; every write is one `BEGIN IMMEDIATE` transaction, so a
promotion reads the current holder, checks the gate against it and moves the alias while holding the
write lock: racing promoters are serialised and each checks the holder that is current when it writes.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefgate.errors import InputError
from prefgate.registry import schema
from prefgate.registry.gatecheck import MINIMUM_POLICY_FILE, Recheck, minimum_policy, recheck
from prefgate.registry.inputs import (
    Artifact,
    JsonFile,
    canonical,
    check_eval,
    check_gate,
    check_manifest,
    hash_artifacts,
    model_name,
    read_json,
    sha256_file,
)

_ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class PromotionRefused(Exception):
    """The registry's answer is no: the gate blocks, its evals are not this run's and the holder's, the
    holder changed, or there is nothing to roll back to. `str(err)` is one line; the CLI exits 1."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))


def default_home() -> Path:
    """`$PREFGATE_HOME`, else `.prefgate/` in the working directory."""
    return Path(os.environ.get("PREFGATE_HOME") or ".prefgate").absolute()


def current_actor() -> str:
    """Who is acting: `$USER`, else the login name, else "unknown"."""
    user = os.environ.get("USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry (some containers)
        return "unknown"


def _short(sha: str | None) -> str:
    return f"sha256 {sha[:12]}" if sha else "no sha256 recorded"


def _one_line(text: str | None) -> str | None:
    return " ".join(text.split()) if text and text.strip() else None


class Registry:
    """The registry database at `home/registry.db` (`home` defaults to `default_home()`)."""

    def __init__(self, home: str | Path | None = None):
        self.home = Path(home).absolute() if home is not None else default_home()
        self.db_path = self.home / "registry.db"

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A fresh connection with the schema up to date (one per call: safe across processes and forks)."""
        self.home.mkdir(parents=True, exist_ok=True)
        conn = schema.connect(self.db_path)
        try:
            yield conn
        finally:
            conn.close()

    # -----------------------------------------------------------------------------------------------------
    # add

    def add(self, run_dir: str | Path, evals: Iterable[str | Path] = ()) -> dict[str, Any]:
        """Register the run in `run_dir` (its manifest, datasets, artifacts) and attach eval reports to it.

        The artifacts are re-hashed first; a folder that does not match its manifest is refused. Adding the
        same run again is a no-op (or records the folder's new location), so `add RUN_DIR --eval E.json`
        also attaches an eval to a run already registered. All rows of one call go in one transaction.
        Returns {"run_id", "run_dir", "outcome": "added"|"unchanged"|"relocated", "evals_added", "evals_known"}.
        """
        run_dir = Path(run_dir).absolute()
        if not run_dir.is_dir():
            raise InputError("no such folder (expected a run folder written by `prefgate train`)", where=str(run_dir))
        if not (run_dir / "manifest.json").is_file():
            raise InputError("not a run folder: it has no manifest.json", where=str(run_dir))
        mf = read_json(run_dir / "manifest.json")
        manifest = check_manifest(mf.data, str(mf.path))
        artifacts = hash_artifacts(run_dir, manifest, str(mf.path))
        reports = {f.sha256: f for f in (read_json(p) for p in evals)}  # the same file twice counts once
        for report in reports.values():
            check_eval(report.data, str(report.path))
        with self.connect() as conn, schema.write(conn):
            outcome = _put_run(conn, run_dir, manifest, artifacts, str(mf.path))
            added, known = _put_evals(conn, manifest["run_id"], reports.values())
        return {"run_id": manifest["run_id"], "run_dir": str(run_dir), "outcome": outcome,
                "evals_added": added, "evals_known": known}

    # -----------------------------------------------------------------------------------------------------
    # list, show

    def list(self) -> list[dict[str, Any]]:
        """One summary dict per run, oldest first: id, created, status, base model, loss, train data, evals,
        aliases it holds, final metrics."""
        with self.connect() as conn, schema.read(conn):
            rows = conn.execute(
                "SELECT r.run_id, r.created, r.status, r.base_model, r.loss_type, r.loss, r.final_metrics, "
                "d.fingerprint AS train_fingerprint, "
                "(SELECT COUNT(*) FROM evals e WHERE e.run_id = r.run_id) AS n_evals "
                "FROM runs r LEFT JOIN run_datasets d ON d.run_id = r.run_id AND d.role = 'train' "
                "ORDER BY r.created, r.run_id").fetchall()
            held = _aliases_by_run(conn)
        return [{"run_id": r["run_id"], "created": r["created"], "status": r["status"],
                 "base_model": r["base_model"], "loss_type": r["loss_type"],
                 "beta": json.loads(r["loss"]).get("beta"), "train_fingerprint": r["train_fingerprint"],
                 "n_evals": r["n_evals"], "aliases": held.get(r["run_id"], []),
                 "final_metrics": json.loads(r["final_metrics"])} for r in rows]

    def show(self, run_id: str) -> dict[str, Any]:
        """Everything about one run (a run id or a unique prefix): datasets with their fingerprints and audit
        verdicts, loss and config (every hyperparameter), code version, final metrics, artifacts, evals,
        gate verdicts that name one of its evals, and the aliases it holds."""
        with self.connect() as conn, schema.read(conn):
            resolved, _ = _resolve(conn, run_id, self.db_path)
            return _details(conn, resolved)

    # -----------------------------------------------------------------------------------------------------
    # promote, rollback, history

    def promote(self, run_id: str, alias: str, gate_path: str | Path | None = None, *, force: bool = False,
                reason: str | None = None) -> dict[str, Any]:
        """Make `run_id` (or a unique prefix) the holder of `alias` if the gate report at `gate_path` allows
        it (see docs/registry.md).

        Allowed when the gate's decision is promote, its candidate eval is registered for the run, and (when
        the alias has a holder) its baseline eval is registered for that holder, as read under the write
        lock. Otherwise `PromotionRefused`, unless `force` (which needs a `reason`): then the refusal it
        overrode, the reason and who did it are recorded. The gate report is stored either way.
        Returns the new history row (see `history`).
        """
        _check_alias(alias)
        reason = _one_line(reason)
        if force and not reason:
            raise InputError("an override needs a reason (--force --reason TEXT)", field="reason")
        if gate_path is None and not force:
            raise InputError("a promotion needs the gate report (--gate GATE.json), or --force --reason TEXT "
                             "to override the gate", field="gate")
        gate_file = read_json(gate_path) if gate_path is not None else None
        checked = None
        if gate_file is not None:
            check_gate(gate_file.data, str(gate_file.path))
            checked = self._recheck(gate_file)  # before the write lock: reads the evals, runs the statistics
            gate_file = gate_file if checked.genuine else None  # a forged verdict is not stored as one
        with self.connect() as conn:
            with schema.write(conn):
                refused, entry = _promote_locked(conn, self.db_path, run_id, alias, gate_file, force, reason,
                                                 checked.refusal if checked else None)
        if entry is None:
            raise PromotionRefused(refused or "refused")
        return entry

    def _recheck(self, gate_file: JsonFile) -> Recheck:
        """The gate report recomputed from the eval files it names, and its policy against the minimum."""
        shas = [gate_file.data[side].get("sha256") or "" for side in ("baseline", "candidate")]
        with self.connect() as conn, schema.read(conn):
            known = {r["sha256"]: r["path"] for r in conn.execute(
                "SELECT sha256, path FROM evals WHERE sha256 IN (?, ?)", shas)}
        path = self.home / MINIMUM_POLICY_FILE
        source = str(path) if path.is_file() else f"the gate's defaults; {path} does not exist"
        return recheck(gate_file, known, minimum_policy(self.home), source)

    def rollback(self, alias: str, *, reason: str | None = None) -> dict[str, Any]:
        """Move `alias` back to the holder before the current one, recorded as a "rollback" history row.

        Rollbacks walk back through the promotions: after promote A, B, C, two rollbacks give B then A.
        `PromotionRefused` when there is no earlier holder. Returns the new history row.
        """
        _check_alias(alias)
        with self.connect() as conn:
            with schema.write(conn):
                holder = _holder(conn, alias)
                if holder is None:
                    raise InputError(f"no alias {alias!r} in the registry", where=str(self.db_path))
                current = conn.execute("SELECT parent_id FROM alias_history WHERE id = ?",
                                       (holder["history_id"],)).fetchone()
                parent = current["parent_id"] and conn.execute(
                    "SELECT id, run_id, parent_id FROM alias_history WHERE id = ?", (current["parent_id"],)).fetchone()
                entry = parent and _append(conn, alias, "rollback", parent["run_id"], holder,
                                           parent_id=parent["parent_id"], reason=_one_line(reason))
        if not entry:
            raise PromotionRefused(f"{alias!r} has no previous holder to roll back to (held by {holder['run_id']})")
        return entry

    def history(self, alias: str) -> list[dict[str, Any]]:
        """Every change of `alias`, oldest first: seq, at, action, run_id, previous_run_id, the gate (id,
        sha256, decision), the baseline and candidate eval sha256s, forced, overridden, reason, actor."""
        with self.connect() as conn, schema.read(conn):
            rows = conn.execute(_HISTORY_SQL + " WHERE h.alias = ? ORDER BY h.seq", (alias,)).fetchall()
        if not rows:
            raise InputError(f"no alias {alias!r} in the registry", where=str(self.db_path))
        return [_history_dict(r) for r in rows]

    def holder(self, alias: str) -> str | None:
        """The run id that holds `alias` now, or None."""
        with self.connect() as conn:
            row = _holder(conn, alias)
        return row["run_id"] if row else None

    # -----------------------------------------------------------------------------------------------------
    # verify

    def verify(self) -> dict[str, Any]:
        """Re-hash every artifact of every run. Returns {"runs", "checked", "problems": [{"run_id", "name",
        "path", "status": "missing"|"modified", "expected", "actual"}], "ok"}."""
        with self.connect() as conn, schema.read(conn):
            rows = conn.execute("SELECT run_id, name, path, sha256 FROM artifacts ORDER BY run_id, name").fetchall()
            n_runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        problems = []
        for row in rows:  # hashing happens outside any transaction: no lock is held while reading big files
            path = Path(row["path"])
            actual = sha256_file(path) if path.is_file() else None
            if actual != row["sha256"]:
                problems.append({"run_id": row["run_id"], "name": row["name"], "path": row["path"],
                                 "status": "missing" if actual is None else "modified",
                                 "expected": row["sha256"], "actual": actual})
        return {"runs": n_runs, "checked": len(rows), "problems": problems, "ok": not problems}


# ---------------------------------------------------------------------------------------------------------
# add


def _put_run(conn: sqlite3.Connection, run_dir: Path, manifest: dict, artifacts: list[Artifact], where: str) -> str:
    run_id, text = manifest["run_id"], canonical(manifest)
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    row = conn.execute("SELECT manifest_sha256, run_dir FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is not None:
        if row["manifest_sha256"] != sha:
            raise InputError(f"run {run_id} is already registered with a different manifest (added from "
                             f"{row['run_dir']}); a run id names exactly one run", where=where, field="run_id")
        if row["run_dir"] == str(run_dir):
            return "unchanged"
        conn.execute("UPDATE runs SET run_dir = ? WHERE run_id = ?", (str(run_dir), run_id))
        conn.executemany("UPDATE artifacts SET path = ? WHERE run_id = ? AND name = ?",
                         [(str(a.path), run_id, a.name) for a in artifacts])
        return "relocated"
    _insert_datasets(conn, manifest)
    conn.execute(
        "INSERT INTO runs (run_id, run_dir, status, created, base_model, loss_type, loss, config, audit_verdict, "
        "audit_override_reason, prefgate_version, git_commit, final_metrics, n_artifacts, manifest, "
        "manifest_sha256, added, added_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, str(run_dir), manifest["status"], manifest["created"], manifest["base_model"],
         manifest["loss"]["type"], canonical(manifest["loss"]), canonical(manifest["config"]),
         manifest["audit"]["verdict"], manifest["audit"].get("override_reason"),
         manifest["code_version"]["prefgate"], manifest["code_version"].get("git_commit"),
         canonical(manifest["final_metrics"]), len(artifacts), text, sha, schema.now(), current_actor()))
    conn.executemany(
        "INSERT INTO run_datasets (run_id, role, fingerprint, path, n_records) VALUES (?, ?, ?, ?, ?)",
        [(run_id, role, d["fingerprint"], d["path"], d["n_records"]) for role, d in _datasets(manifest)])
    _insert_artifacts(conn, run_id, artifacts)
    return "added"


def _datasets(manifest: dict) -> list[tuple[str, dict]]:
    return [(role, manifest["datasets"][role]) for role in ("train", "eval") if manifest["datasets"].get(role)]


def _insert_datasets(conn: sqlite3.Connection, manifest: dict) -> None:
    """One row per fingerprint; the audit verdict (of the train data) is the latest one a run reported."""
    for role, d in _datasets(manifest):
        verdict = manifest["audit"]["verdict"] if role == "train" else None
        conn.execute(
            "INSERT INTO datasets (fingerprint, path, n_records, audit_verdict, first_seen) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (fingerprint) DO UPDATE SET audit_verdict = COALESCE(excluded.audit_verdict, audit_verdict)",
            (d["fingerprint"], d["path"], d["n_records"], verdict, schema.now()))


def _insert_artifacts(conn: sqlite3.Connection, run_id: str, artifacts: list[Artifact]) -> None:
    conn.executemany("INSERT INTO artifacts (run_id, name, path, sha256, size) VALUES (?, ?, ?, ?, ?)",
                     [(run_id, a.name, str(a.path), a.sha256, a.size) for a in artifacts])


def _put_evals(conn: sqlite3.Connection, run_id: str, reports: Iterable[JsonFile]) -> tuple[list[str], list[str]]:
    added, known = [], []
    for f in reports:
        row = conn.execute("SELECT run_id FROM evals WHERE sha256 = ?", (f.sha256,)).fetchone()
        if row is not None and row["run_id"] != run_id:
            raise InputError(f"this eval report is already registered for run {row['run_id']}", where=str(f.path))
        if row is not None:
            known.append(f.sha256)
            continue
        r = f.data
        conn.execute(
            "INSERT INTO evals (sha256, run_id, path, model, suite_path, suite_fingerprint, overall, categories, "
            "created, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (f.sha256, run_id, str(f.path), canonical(r["model"]), r["suite"].get("path"), r["suite"]["fingerprint"],
             canonical(r["overall"]), canonical(r["categories"]), r.get("created"), schema.now()))
        added.append(f.sha256)
    return added, known


# ---------------------------------------------------------------------------------------------------------
# look-ups


def _resolve(conn: sqlite3.Connection, ref: str, db_path: Path) -> tuple[str, str]:
    """(run_id, status) of a run id or a unique prefix of one."""
    row = conn.execute("SELECT run_id, status FROM runs WHERE run_id = ?", (ref,)).fetchone()
    if row is not None:
        return row["run_id"], row["status"]
    rows = conn.execute("SELECT run_id, status FROM runs WHERE substr(run_id, 1, ?) = ? ORDER BY run_id LIMIT 4",
                        (len(ref), ref)).fetchall() if ref else []
    if len(rows) == 1:
        return rows[0]["run_id"], rows[0]["status"]
    if not rows:
        raise InputError(f"no run {ref!r} in the registry (`prefgate registry list` shows them)", where=str(db_path))
    shown = ", ".join(r["run_id"] for r in rows[:3]) + (", ..." if len(rows) > 3 else "")
    raise InputError(f"{ref!r} is ambiguous: it starts {shown}; give more of the run id", where=str(db_path))


def _aliases_by_run(conn: sqlite3.Connection) -> dict[str, list[str]]:
    held: dict[str, list[str]] = {}
    for row in conn.execute("SELECT name, run_id FROM aliases ORDER BY name"):
        held.setdefault(row["run_id"], []).append(row["name"])
    return held


def _holder(conn: sqlite3.Connection, alias: str) -> sqlite3.Row | None:
    return conn.execute("SELECT run_id, history_id FROM aliases WHERE name = ?", (alias,)).fetchone()


def _eval_of(conn: sqlite3.Connection, sha: str | None, run_id: str) -> bool:
    return sha is not None and conn.execute("SELECT 1 FROM evals WHERE sha256 = ? AND run_id = ?",
                                            (sha, run_id)).fetchone() is not None


def _details(conn: sqlite3.Connection, run_id: str) -> dict[str, Any]:
    run = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    datasets = {r["role"]: {"path": r["path"], "fingerprint": r["fingerprint"], "n_records": r["n_records"],
                            "audit_verdict": r["audit_verdict"]}
                for r in conn.execute("SELECT d.role, d.path, d.fingerprint, d.n_records, s.audit_verdict "
                                      "FROM run_datasets d JOIN datasets s USING (fingerprint) WHERE d.run_id = ?",
                                      (run_id,))}
    artifacts = [dict(r) for r in conn.execute(
        "SELECT name, sha256, size, path FROM artifacts WHERE run_id = ? ORDER BY name", (run_id,))]
    evals = [{"sha256": r["sha256"], "path": r["path"], "model": model_name(json.loads(r["model"])),
              "suite_fingerprint": r["suite_fingerprint"], "overall": json.loads(r["overall"]),
              "categories": json.loads(r["categories"]), "created": r["created"], "added": r["added"]}
             for r in conn.execute("SELECT * FROM evals WHERE run_id = ? ORDER BY added, sha256", (run_id,))]
    gates = [{"id": r["id"], "sha256": r["sha256"], "path": r["path"], "decision": r["decision"],
              "reasons": json.loads(r["reasons"]), "role": r["role"], "added": r["added"]}
             for r in conn.execute(
                 "SELECT g.*, CASE WHEN g.candidate_sha256 = e.sha256 THEN 'candidate' ELSE 'baseline' END AS role "
                 "FROM gates g JOIN evals e ON e.sha256 IN (g.candidate_sha256, g.baseline_sha256) "
                 "WHERE e.run_id = ? ORDER BY g.id", (run_id,))]
    return {
        "run_id": run_id, "run_dir": run["run_dir"], "status": run["status"], "created": run["created"],
        "added": run["added"], "added_by": run["added_by"], "base_model": run["base_model"],
        "loss": json.loads(run["loss"]), "config": json.loads(run["config"]), "datasets": datasets,
        "audit": {"verdict": run["audit_verdict"], "override_reason": run["audit_override_reason"]},
        "code_version": {"prefgate": run["prefgate_version"], "git_commit": run["git_commit"]},
        "final_metrics": json.loads(run["final_metrics"]), "artifacts": artifacts, "evals": evals, "gates": gates,
        "aliases": _aliases_by_run(conn).get(run_id, []),
    }


# ---------------------------------------------------------------------------------------------------------
# the alias


def _check_alias(alias: str) -> None:
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise InputError(f"expected 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit), "
                         f"got {alias!r}", field="alias")


def _promote_locked(conn: sqlite3.Connection, db_path: Path, run: str, alias: str, gate_file: JsonFile | None,
                    force: bool, reason: str | None, recheck_refusal: str | None
                    ) -> tuple[str | None, dict[str, Any] | None]:
    """Inside the write lock: (refusal, None) or (what was overridden, the new history row). `gate_file` is
    None for a report that did not match its inputs; `recheck_refusal` says why, or why its policy is too lax."""
    run_id, status = _resolve(conn, run, db_path)
    gate = gate_file.data if gate_file else None
    gate_id = _put_gate(conn, gate_file) if gate_file else None
    holder = _holder(conn, alias)
    if holder is not None and holder["run_id"] == run_id:
        return f"run {run_id} already holds {alias!r}", None  # not even --force re-promotes the holder
    refused = _refusal(conn, run_id, status, alias, holder["run_id"] if holder else None, gate, recheck_refusal)
    refused = "; and ".join(r for r in (_audit_refusal(conn, run_id, db_path.parent), refused) if r) or None
    if refused and not force:
        return refused, None
    entry = _append(conn, alias, "promote", run_id, holder, parent_id=holder["history_id"] if holder else None,
                    gate_id=gate_id, baseline_eval_sha256=gate and gate["baseline"].get("sha256"),
                    candidate_eval_sha256=gate and gate["candidate"].get("sha256"),
                    forced=int(refused is not None), overridden=refused, reason=reason)
    return refused, entry


def _refusal(conn: sqlite3.Connection, run_id: str, status: str, alias: str, holder_id: str | None,
             gate: dict | None, recheck_refusal: str | None = None) -> str | None:
    """Why `run_id` may not take `alias` from `holder_id` on this gate report, or None if it may."""
    if status != "completed":
        return f"run {run_id} is {status}; only a completed run can be promoted"
    if recheck_refusal:
        return recheck_refusal
    if gate is None:
        return "no gate report was given"
    if gate["decision"] != "promote":
        reasons = gate["reasons"]
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        return f"the gate's decision is block: {reasons[0] if reasons else 'no reason given'}{more}"
    candidate = gate["candidate"].get("sha256")
    if not _eval_of(conn, candidate, run_id):
        return (f"the gate's candidate eval ({_short(candidate)}) is not an eval registered for run {run_id}; "
                "attach it with `prefgate registry add RUN_DIR --eval EVAL.json`")
    baseline = gate["baseline"].get("sha256")
    if holder_id is not None and not _eval_of(conn, baseline, holder_id):
        return (f"the gate's baseline eval ({_short(baseline)}) is not an eval of {holder_id}, the current holder "
                f"of {alias!r}; gate this run against an eval of {holder_id}")
    return None


def _audit_refusal(conn: sqlite3.Connection, run_id: str, home: Path) -> str | None:
    """Why `run_id` may not be promoted because of its training data's audit, or None: its own pre-training
    audit failed (it trained with --allow-audit-fail), or an audit recorded for the data failed (in its
    manifest, or in this registry's home, by the data's fingerprint)."""
    from prefgate.registry.audits import describe_failure, failed_audits

    manifest = json.loads(conn.execute("SELECT manifest FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0])
    audit = manifest.get("audit") or {}
    train = (manifest.get("datasets") or {}).get("train") or {}
    findings = []
    if audit.get("verdict") == "fail":
        findings.append(f"its pre-training audit failed ({', '.join(audit.get('failed') or []) or 'a check'}) and "
                        f"was overridden ({audit.get('override_reason')!r})")
    recorded = {a["sha256"]: a for a in audit.get("recorded") or [] if isinstance(a, dict) and
                a.get("verdict") == "fail" and a.get("sha256")}
    recorded.update({a["sha256"]: a for a in failed_audits(home, train.get("fingerprint"))})
    if recorded:
        last = list(recorded.values())[-1]
        findings.append(f"the recorded audit of its training data failed: {describe_failure(last)}")
    if not findings:
        return None
    return (f"run {run_id} was trained on data whose audit failed: {'; '.join(findings)}; promote it only with "
            "--force --reason TEXT")


def _put_gate(conn: sqlite3.Connection, gate_file: JsonFile) -> int:
    """Store the gate report (once per file content); its row id."""
    g = gate_file.data
    conn.execute(
        "INSERT INTO gates (sha256, path, decision, reasons, baseline_sha256, candidate_sha256, suite_fingerprint, "
        "report, created, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING",
        (gate_file.sha256, str(gate_file.path), g["decision"], canonical(g["reasons"]), g["baseline"].get("sha256"),
         g["candidate"].get("sha256"), g["candidate"].get("suite_fingerprint"), canonical(g), g.get("created"),
         schema.now()))
    return conn.execute("SELECT id FROM gates WHERE sha256 = ?", (gate_file.sha256,)).fetchone()[0]


def _append(conn: sqlite3.Connection, alias: str, action: str, run_id: str, holder: sqlite3.Row | None, *,
            parent_id: int | None, **extra: Any) -> dict[str, Any]:
    """Append a history row making `run_id` the holder of `alias`, and point the alias at it."""
    seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM alias_history WHERE alias = ?", (alias,)).fetchone()[0]
    row = {"alias": alias, "seq": seq, "action": action, "run_id": run_id,
           "previous_run_id": holder["run_id"] if holder else None, "parent_id": parent_id,
           "actor": current_actor(), "at": schema.now(), **extra}
    cur = conn.execute(f"INSERT INTO alias_history ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       tuple(row.values()))
    conn.execute("INSERT INTO aliases (name, run_id, history_id) VALUES (?, ?, ?) ON CONFLICT (name) "
                 "DO UPDATE SET run_id = excluded.run_id, history_id = excluded.history_id",
                 (alias, run_id, cur.lastrowid))
    return _history_dict(conn.execute(_HISTORY_SQL + " WHERE h.id = ?", (cur.lastrowid,)).fetchone())


_HISTORY_SQL = ("SELECT h.*, g.sha256 AS gate_sha256, g.decision AS gate_decision, g.path AS gate_path "
                "FROM alias_history h LEFT JOIN gates g ON g.id = h.gate_id")


def _history_dict(r: sqlite3.Row) -> dict[str, Any]:
    gate = {"id": r["gate_id"], "sha256": r["gate_sha256"], "decision": r["gate_decision"],
            "path": r["gate_path"]} if r["gate_id"] is not None else None
    return {"alias": r["alias"], "seq": r["seq"], "at": r["at"], "action": r["action"], "run_id": r["run_id"],
            "previous_run_id": r["previous_run_id"], "gate": gate, "baseline_eval_sha256": r["baseline_eval_sha256"],
            "candidate_eval_sha256": r["candidate_eval_sha256"], "forced": bool(r["forced"]),
            "overridden": r["overridden"], "reason": r["reason"], "actor": r["actor"]}
