"""Recorded audits: the audit reports kept in the registry home, by the fingerprint of the data they audited.

`prefgate audit DATA ... --record` (or `record_audit(home, "audit.json")`) copies the report to
`HOME/audits/<dataset fingerprint>/<sha256 of the report's bytes>.json`, atomically; a recorded audit is never
edited or removed by prefgate. Two stages read them:

- `prefgate train` refuses data with a recorded audit whose verdict is `fail` (the data's fingerprint is the
  key, so a copy of the file under another name is the same data), unless `--allow-audit-fail REASON`;
- `prefgate registry promote` refuses a run trained on such data, unless `--force --reason`.

Any recorded `fail` counts, whatever was recorded after it: an audit run later without the labels that failed
(the trainer's own audit has none) cannot clear a failed label check. Fixing the data gives it a new
fingerprint; a failure judged wrong is overridden with a reason, which is recorded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from prefgate.errors import InputError
from prefgate.reportio import read_json_with_sha256, sha256_file

FOLDER = "audits"
_HEX = set("0123456789abcdef")


def _fingerprint(report: Any, where: str) -> str:
    if not isinstance(report, dict) or report.get("kind") != "audit":
        raise InputError("is not an audit report (expected \"kind\": \"audit\", as `prefgate audit --json` writes)",
                         where=where)
    dataset = report.get("dataset") if isinstance(report.get("dataset"), dict) else {}
    fp = dataset.get("fingerprint")
    if not isinstance(fp, str) or len(fp) != 64 or not set(fp) <= _HEX:
        raise InputError(f"expected 64 lowercase hex digits (a sha256), got {fp!r}", where=where,
                         field="dataset.fingerprint")
    if report.get("verdict") not in ("pass", "warn", "fail"):
        raise InputError(f"expected one of 'pass', 'warn', 'fail', got {report.get('verdict')!r}", where=where,
                         field="verdict")
    return fp


def summary(report: dict[str, Any], sha256: str, path: str) -> dict[str, Any]:
    """What the trainer, the manifest and the registry say about one recorded audit."""
    checks = [c for c in report.get("checks") or [] if isinstance(c, dict)]
    labels = next((c for c in checks if c.get("id") == "label_agreement"), None)
    return {"sha256": sha256, "path": path, "verdict": report["verdict"], "created": report.get("created"),
            "dataset": report["dataset"].get("path"), "fingerprint": report["dataset"]["fingerprint"],
            "failed": [c.get("id") for c in checks if c.get("status") == "fail"],
            "label_agreement": None if labels is None else labels.get("value")}


def record_audit(home: str | Path, report_path: str | Path) -> dict[str, Any]:
    """Record the audit report at `report_path` under `home`; its summary (with the recorded file's path).
    Recording the same bytes again is a no-op."""
    read = read_json_with_sha256(report_path)
    fingerprint = _fingerprint(read.data, str(report_path))
    folder = Path(home) / FOLDER / fingerprint
    target = folder / f"{read.sha256}.json"
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tmp-{read.sha256}-{os.getpid()}"
        tmp.write_bytes(Path(report_path).read_bytes())
        os.replace(tmp, target)
    return summary(read.data, read.sha256, str(target))


def recorded_audits(home: str | Path, fingerprint: str | None) -> list[dict[str, Any]]:
    """Summaries of every audit recorded under `home` for data with `fingerprint`, oldest first. Reading creates
    nothing; an unreadable file is skipped (only `record_audit` writes here)."""
    folder = Path(home) / FOLDER / str(fingerprint)
    if not fingerprint or not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            if _fingerprint(report, str(path)) != fingerprint:
                continue
        except (OSError, ValueError, InputError):
            continue
        out.append(summary(report, sha256_file(path), str(path)))
    return sorted(out, key=lambda a: (str(a["created"]), a["sha256"]))


def failed_audits(home: str | Path, fingerprint: str | None) -> list[dict[str, Any]]:
    return [a for a in recorded_audits(home, fingerprint) if a["verdict"] == "fail"]


def describe_failure(audit: dict[str, Any]) -> str:
    """One clause: which checks failed, where the recorded report is, when it was made."""
    agreement = audit.get("label_agreement")
    labels = f", label agreement {agreement:.0%}" if isinstance(agreement, (int, float)) else ""
    return (f"{', '.join(audit['failed']) or 'a check'} failed{labels} (recorded {audit['path']}, audit of "
            f"{audit['dataset']} made {audit['created']})")
