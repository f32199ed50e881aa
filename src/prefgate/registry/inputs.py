"""Reading and checking what the registry is given: run manifests, eval reports, gate reports, artifacts.

Every problem is an `InputError` naming the file and the field (dotted, e.g. `datasets.train.fingerprint`).
Only the fields the registry stores or relies on are checked; other fields are kept as they are.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from prefgate.errors import InputError
from prefgate.reportio import JsonFile, read_json_with_sha256, sha256_file

MANIFEST_VERSION = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MISSING = object()


@dataclass(frozen=True)
class Artifact:
    name: str  # relative to the run folder, as in the manifest
    path: Path  # absolute
    sha256: str
    size: int


def read_json(path: str | Path) -> JsonFile:
    """The parsed file (absolute path) and the sha256 of its bytes; InputError for a missing file or bad JSON."""
    return read_json_with_sha256(Path(path).absolute())


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def field(obj: dict, dotted: str, types: type | tuple[type, ...], where: str, *, optional: bool = False) -> Any:
    """obj[a][b]... for `dotted` = "a.b", checked against `types` (None allowed when `optional`)."""
    value: Any = obj
    for key in dotted.split("."):
        value = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
        if value is _MISSING:
            raise InputError("missing", where=where, field=dotted)
    if value is None and optional:
        return None
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        names = " or ".join(t.__name__ for t in _as_tuple(types)) + (" or null" if optional else "")
        raise InputError(f"expected {names}, got {_type_name(value)}", where=where, field=dotted)
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _choice(obj: dict, dotted: str, choices: tuple, where: str) -> Any:
    value = field(obj, dotted, (str, type(None)), where)
    if value not in choices:
        shown = ", ".join("null" if c is None else repr(c) for c in choices)
        raise InputError(f"expected one of {shown}, got {_type_name(value) if value is None else repr(value)}",
                         where=where, field=dotted)
    return value


def _kind(obj: Any, kind: str, where: str) -> None:
    if not isinstance(obj, dict):
        raise InputError(f"expected a JSON object (a {kind} report), got {_type_name(obj)}", where=where)
    if obj.get("kind") != kind:
        raise InputError(f"expected \"{kind}\", got {obj.get('kind')!r}", where=where, field="kind")


def _fingerprint(obj: dict, dotted: str, where: str) -> str:
    value = field(obj, dotted, str, where)
    if not _HEX64.fullmatch(value):
        raise InputError(f"expected 64 lowercase hex digits (a sha256), got {value!r}", where=where, field=dotted)
    return value


def _dataset(manifest: dict, role: str, where: str) -> None:
    base = f"datasets.{role}"
    field(manifest, f"{base}.path", str, where)
    _fingerprint(manifest, f"{base}.fingerprint", where)
    if field(manifest, f"{base}.n_records", int, where) < 0:
        raise InputError("expected a count >= 0", where=where, field=f"{base}.n_records")


def check_manifest(manifest: Any, where: str) -> dict:
    """A run manifest (see docs/registry.md), checked field by field; returned unchanged."""
    _kind(manifest, "run", where)
    version = field(manifest, "version", int, where)
    if version > MANIFEST_VERSION:
        raise InputError(f"manifest version {version} is newer than this prefgate reads ({MANIFEST_VERSION}); "
                         "upgrade prefgate", where=where, field="version")
    for name in ("created", "prefgate_version", "run_id", "base_model", "loss.type", "code_version.prefgate"):
        if not field(manifest, name, str, where).strip():
            raise InputError("expected a non-empty string", where=where, field=name)
    _choice(manifest, "status", ("completed", "aborted"), where)
    for name in ("loss", "config", "datasets", "audit", "code_version", "artifacts", "final_metrics"):
        field(manifest, name, dict, where)
    _dataset(manifest, "train", where)
    if manifest["datasets"].get("eval") is not None:  # null or absent: no eval data
        field(manifest, "datasets.eval", dict, where)
        _dataset(manifest, "eval", where)
    _choice(manifest, "audit.verdict", ("pass", "warn", "fail", None), where)
    field(manifest, "audit.override_reason", str, where, optional=True)
    field(manifest, "code_version.git_commit", str, where, optional=True)
    for name in manifest["artifacts"]:
        _artifact_sha(manifest, name, where)
    return manifest


def _artifact_sha(manifest: dict, name: str, where: str) -> None:
    value = manifest["artifacts"][name]
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise InputError(f"expected a sha256 (64 lowercase hex digits), got {value!r}", where=where,
                         field=f"artifacts[{name!r}]")


def hash_artifacts(run_dir: Path, manifest: dict, where: str) -> list[Artifact]:
    """Re-hash every artifact the manifest lists; InputError if one is missing, outside the folder or changed."""
    artifacts, problems = [], []
    for name, expected in sorted(manifest["artifacts"].items()):
        path = _artifact_path(run_dir, name, where)
        if not path.is_file():
            problems.append(f"{name} is missing")
            continue
        actual = sha256_file(path)
        if actual != expected:
            problems.append(f"{name} has sha256 {actual[:12]}..., the manifest says {expected[:12]}...")
        artifacts.append(Artifact(name, path, actual, path.stat().st_size))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(f"the run folder does not match its manifest: {problems[0]}{more}", where=where,
                         field="artifacts")
    return artifacts


def _artifact_path(run_dir: Path, name: str, where: str) -> Path:
    rel = PurePosixPath(name)
    if not name or rel.is_absolute() or ".." in rel.parts or "\\" in name:
        raise InputError(f"expected a path inside the run folder, got {name!r}", where=where,
                         field=f"artifacts[{name!r}]")
    path = run_dir.joinpath(*rel.parts)
    if path.exists() and not path.resolve().is_relative_to(run_dir.resolve()):
        raise InputError(f"{name} is a symlink (or under one) that leaves the run folder, to {path.resolve()}; "
                         "an artifact must live inside the run folder", where=where, field=f"artifacts[{name!r}]")
    return path


def check_eval(report: Any, where: str) -> dict:
    """An eval report: the fields the registry stores (model, suite fingerprint, overall, categories)."""
    _kind(report, "eval", where)
    field(report, "model", (str, dict), where)
    field(report, "suite", dict, where)
    field(report, "suite.fingerprint", str, where)
    if "path" in report["suite"]:
        field(report, "suite.path", str, where, optional=True)
    field(report, "overall", dict, where)
    field(report, "categories", dict, where)
    return report


def check_gate(report: Any, where: str) -> dict:
    """A gate report: decision, reasons, and which eval files (by sha256) it compared."""
    _kind(report, "gate", where)
    _choice(report, "decision", ("promote", "block"), where)
    reasons = field(report, "reasons", list, where)
    if not all(isinstance(r, str) for r in reasons):
        raise InputError("expected a list of strings", where=where, field="reasons")
    for side in ("baseline", "candidate"):
        field(report, side, dict, where)
        field(report, f"{side}.sha256", str, where, optional=True)
    return report


def model_name(model: Any) -> str:
    """A short display name for an eval report's model (a string, or a block with a path or adapter)."""
    if isinstance(model, dict):
        return str(model.get("adapter") or model.get("path") or model.get("base") or canonical(model))
    return str(model)
