"""Malformed input through the real CLI: every case exits 2 with one `error:` line (a train config: one per
problem) and no traceback.

A table of hand-made bad inputs across data files, train configs, eval suites, gate reports and policies,
the registry database, run manifests and human-label files (each case a small builder that writes the
files under a temporary folder and returns the command line), plus a seeded sweep of random damage to good
files, which may be accepted (exit 0) or refused (exit 2) but never crash. Everything runs in-process
through typer's CliRunner; no case loads a model.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from prefgate.cli import app
from tests.registry.conftest import Build

Builder = Callable[[Path], list[str]]
CASES: dict[str, Builder] = {}

GOOD = {"prompt": "q", "chosen": "a", "rejected": "b"}
GOOD_LINE = json.dumps(GOOD)
DEEP = "[" * 100_000 + "]" * 100_000
HUGE = "9" * 5000
FP = "f" * 64


def case(name: str, builder: Builder) -> None:
    assert name not in CASES, name
    CASES[name] = builder


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


# ---------------------------------------------------------------------------------------------------------
# Data files: `prefgate data validate FILE`

def data_file(name: str, data: str | bytes, *extra: str) -> Builder:
    return lambda tmp: ["data", "validate", str(write(tmp / name, data)), *extra]


BAD_LINES = {
    "syntax": "{not json",
    "truncated-object": '{"prompt": "q", "chosen": "a", "rejected": "b"',
    "trailing-garbage": GOOD_LINE + " x",
    "nan-prompt": '{"prompt": NaN, "chosen": "a", "rejected": "b"}',
    "bom-mid-file": "\ufeff" + GOOD_LINE,
    "missing-rejected": '{"prompt": "q", "chosen": "a"}',
    "number-for-text": '{"prompt": "q", "chosen": 3, "rejected": "b"}',
    "empty-prompt": '{"prompt": "", "chosen": "a", "rejected": "b"}',
    "array-row": "[1, 2]",
    "string-row": '"a string"',
    "null-row": "null",
    "number-row": "42",
    "duplicate-key": '{"prompt": "q", "chosen": "a", "chosen": "c", "rejected": "b"}',
    "duplicate-key-in-message": '{"prompt": [{"role": "user", "content": "q", "content": "r"}], '
                                '"chosen": [{"role": "assistant", "content": "a"}], '
                                '"rejected": [{"role": "assistant", "content": "b"}]}',
    "duplicate-key-in-meta-string": '{"prompt": "q", "chosen": "a", "rejected": "b", '
                                    '"meta": "{\\"k\\": 1, \\"k\\": 2}"}',
    "lone-high-surrogate": '{"prompt": "q\\ud800", "chosen": "a", "rejected": "b"}',
    "lone-low-surrogate": '{"prompt": "q", "chosen": "\\udfff", "rejected": "b"}',
    "surrogate-in-key": '{"prompt": "q", "chosen": "a", "rejected": "b", "\\ud800": 1}',
    "reversed-surrogate-pair": '{"prompt": "\\ude00\\ud83d", "chosen": "a", "rejected": "b"}',
    "deep-meta": '{"prompt": "q", "chosen": "a", "rejected": "b", "meta": {"x": ' + DEEP + "}}",
    "deep-line": DEEP,
    "huge-int-field": '{"prompt": "q", "chosen": "a", "rejected": "b", "n": ' + HUGE + "}",
    "huge-int-id": '{"id": ' + HUGE + ', "prompt": "q", "chosen": "a", "rejected": "b"}',
    "unknown-role": '{"prompt": [{"role": "human", "content": "q"}], "chosen": [{"role": "assistant", '
                    '"content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}',
    "content-not-string": '{"prompt": [{"role": "user", "content": 1}], "chosen": [{"role": "assistant", '
                          '"content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}',
    "mixed-kinds": '{"prompt": "q", "completion": "a", "label": true}',
    "duplicate-id": '{"id": "x", "prompt": "q", "chosen": "a", "rejected": "b"}\n'
                    '{"id": "x", "prompt": "q", "chosen": "c", "rejected": "b"}',
    "id-list": '{"id": [1], "prompt": "q", "chosen": "a", "rejected": "b"}',
    "meta-list": '{"prompt": "q", "chosen": "a", "rejected": "b", "meta": [1]}',
    "nul-byte": '{"prompt": "q\x00", "chosen": "a", "rejected": "b"}',
    "implicit-no-prefix": '{"chosen": "Human: hi. Assistant: yes", "rejected": "Sure, no"}',
}
for _name, _line in BAD_LINES.items():
    case(f"data/jsonl/{_name}", data_file("d.jsonl", GOOD_LINE + "\n" + _line + "\n"))
case("data/jsonl/not-utf8", data_file("d.jsonl", GOOD_LINE.encode() + b'\n{"prompt": "\xff"}\n'))
case("data/jsonl/latin1-file", data_file("d.jsonl", '{"prompt": "caf\u00e9", "chosen": "a", "rejected": "b"}\n'
                                          .encode("latin-1")))
case("data/jsonl/empty", data_file("d.jsonl", ""))
case("data/jsonl/blank-lines-only", data_file("d.jsonl", "\n  \n\n"))
case("data/jsonl/unpaired-bad-label", data_file("d.jsonl", '{"prompt": "q", "completion": "a", "label": "yes"}\n'))
case("data/jsonl/all-invalid-skipped", data_file("d.jsonl", "{x\n{y\n", "--skip-invalid", "--rejected-out",
                                                 "/dev/null"))

JSON_FILES = {
    "object": "{}", "null": "null", "string": '"x"', "empty": "", "truncated": json.dumps([GOOD] * 3)[:-5],
    "duplicate-key": '[{"prompt": "q", "chosen": "a", "rejected": "b", "rejected": "c"}]',
    "surrogate": '[{"prompt": "\\ud800", "chosen": "a", "rejected": "b"}]', "deep": DEEP,
    "huge-int": "[" + HUGE + "]", "array-of-arrays": "[[1]]",
}
for _name, _text in JSON_FILES.items():
    case(f"data/json/{_name}", data_file("d.json", _text))
case("data/json/not-utf8", data_file("d.json", b'[{"prompt": "\xfe"}]'))

_JSONL_BYTES = (GOOD_LINE + "\n").encode() * 300 + b'{"prompt": "last", "chosen": "a", "rejected": "b"}\n'
_GZ = gz(_JSONL_BYTES)
for _cut in (1, 10, 18, len(_GZ) // 3, len(_GZ) // 2, len(_GZ) - 9, len(_GZ) - 4):
    case(f"data/gz/truncated-at-{_cut}", data_file("d.jsonl.gz", _GZ[:_cut]))
case("data/gz/not-gzip", data_file("d.jsonl.gz", _JSONL_BYTES))
case("data/gz/bad-crc", data_file("d.jsonl.gz", _GZ[:-8] + bytes(4) + _GZ[-4:]))
case("data/gz/bad-length", data_file("d.jsonl.gz", _GZ[:-4] + b"\xff\xff\xff\x7f"))
case("data/gz/corrupt-body", data_file("d.jsonl.gz", _GZ[:12] + bytes(b ^ 0x5A for b in _GZ[12:40]) + _GZ[40:]))
case("data/gz/json-truncated", data_file("d.json.gz", gz(json.dumps([GOOD] * 100).encode())[:30]))
case("data/gz/json-not-gzip", data_file("d.json.gz", json.dumps([GOOD])))
case("data/gz/bad-row-inside", data_file("d.jsonl.gz", gz(b'{"prompt": "q", "chosen": 1, "rejected": "b"}\n')))
case("data/gz/not-utf8-inside", data_file("d.jsonl.gz", gz(b'{"prompt": "\xff"}\n')))

CSV_FILES = {
    "extra-cell": "prompt,chosen,rejected\nq,a,b\nq,a,b,c\n",
    "duplicate-header": "prompt,chosen,rejected,chosen\nq,a,b,c\n",
    "duplicate-header-skip": "prompt,chosen,rejected,prompt\nq,a,b,c\n",
    "no-format-columns": "question,answer\nq,a\n",
    "header-only": "prompt,chosen,rejected\n",
    "empty": "",
    "messages-duplicate-key": 'prompt,chosen,rejected\n"[{""role"": ""user"", ""content"": ""q"", ""role"": '
                              '""system""}]",a,b\n',
    "messages-surrogate": 'prompt,chosen,rejected\n"[{""role"": ""user"", ""content"": ""\\ud800""}]",a,b\n',
    "missing-cell": "prompt,chosen,rejected\nq,a\n",
}
for _name, _text in CSV_FILES.items():
    extra = ("--skip-invalid",) if _name == "duplicate-header-skip" else ()
    case(f"data/csv/{_name}", data_file("d.csv", _text, *extra))
case("data/csv/not-utf8", data_file("d.csv", b"prompt,chosen,rejected\nq\xff,a,b\n"))


def _parquet(rows: dict[str, list]) -> Builder:
    def build(tmp: Path) -> list[str]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(rows), tmp / "d.parquet")
        return ["data", "validate", str(tmp / "d.parquet")]
    return build


def _truncated_parquet(tmp: Path) -> list[str]:
    _parquet({"prompt": ["q"] * 50, "chosen": ["a"] * 50, "rejected": ["b"] * 50})(tmp)
    path = tmp / "d.parquet"
    path.write_bytes(path.read_bytes()[:-30])
    return ["data", "validate", str(path)]


case("data/parquet/random-bytes", data_file("d.parquet", os.urandom(512)))
case("data/parquet/truncated", _truncated_parquet)
case("data/parquet/missing-columns", _parquet({"prompt": ["q"], "answer": ["a"]}))
case("data/parquet/meta-duplicate-key", _parquet({"prompt": ["q"], "chosen": ["a"], "rejected": ["b"],
                                                   "meta": ['{"k": 1, "k": 2}']}))
case("data/parquet/chosen-number", _parquet({"prompt": ["q"], "chosen": [1], "rejected": ["b"]}))
case("data/source/unsupported-extension", data_file("d.txt", GOOD_LINE))
case("data/source/missing-file", lambda tmp: ["data", "validate", str(tmp / "nope.jsonl")])
case("data/source/folder-not-a-dataset", lambda tmp: ["data", "validate", str(tmp)])
case("data/source/hub-id-offline", lambda tmp: ["data", "validate", "no-such-org/no-such-dataset"])
case("data/convert/bad-row", lambda tmp: ["data", "convert", str(write(tmp / "d.jsonl", "{x\n")),
                                          str(tmp / "o.jsonl")])
case("data/stats/duplicate-key", lambda tmp: ["data", "stats", str(write(tmp / "d.jsonl", BAD_LINES["duplicate-key"]))])

# ---------------------------------------------------------------------------------------------------------
# Train configs: `prefgate train CONFIG` (all fail at load, before any model)

BASE_CONFIG = "model: {name_or_path: /no/such/model}\ndata: {train: /no/such/data.jsonl}\n"


def train_config(text: str | bytes, *overrides: str) -> Builder:
    return lambda tmp: ["train", str(write(tmp / "c.yaml", text)), *overrides]


CONFIG_EXTRAS = {
    "beta-zero": "loss: {beta: 0}", "beta-negative": "loss: {beta: -1}", "beta-nan": "loss: {beta: .nan}",
    "beta-inf": "loss: {beta: .inf}", "beta-minus-inf": "loss: {beta: -.inf}", "beta-text": "loss: {beta: abc}",
    "beta-bool": "loss: {beta: true}", "beta-list": "loss: {beta: [0.1]}", "beta-map": "loss: {beta: {a: 1}}",
    "beta-null": "loss: {beta: null}", "beta-huge": "loss: {beta: " + "9" * 400 + "}",
    "dpop-lam-nan": "loss: {type: dpop, lam: .nan}", "cdpo-eps-text": "loss: {type: cdpo, eps: x}",
    "ipo-length-normalize-int": "loss: {type: ipo, length_normalize: 1}",
    "unknown-hyperparameter": "loss: {type: dpo, gamma: 1}", "unknown-loss": "loss: {type: nope}",
    "lr-inf": "optim: {lr: .inf}", "lr-nan": "optim: {lr: .nan}", "lr-zero": "optim: {lr: 0}",
    "lr-negative": "optim: {lr: -1.0e-5}", "lr-text": "optim: {lr: fast}", "lr-text-inf": "optim: {lr: 'inf'}",
    "weight-decay-nan": "optim: {weight_decay: .nan}", "eps-inf": "optim: {eps: .inf}",
    "max-grad-norm-inf": "optim: {max_grad_norm: .inf}", "betas-nan": "optim: {betas: [.nan, 0.9]}",
    "warmup-negative": "optim: {warmup_steps: -1}", "batch-size-zero": "batch_size: 0",
    "epochs-text": "epochs: many", "precision-unknown": "precision: fp8", "unknown-key": "learning_rate: 0.1",
    "reference-model-missing": "reference: {strategy: model}", "output-dir-empty": "output_dir: '  '",
    "pack-tokens-concatenated": "forward: concatenated\npack_tokens: 128",
    "duplicate-top-key": "seed: 1\nseed: 2", "duplicate-nested-key": "optim:\n  lr: 1.0e-5\n  lr: 2.0e-5",
    "deep-nesting": "x: " + "[" * 1000, "huge-int": "seed: " + HUGE, "python-tag": "seed: !!python/object:os.system x",
    "impossible-date": "seed: 2024-13-45", "tab-indent": "optim:\n\tlr: 1",
}
for _name, _extra in CONFIG_EXTRAS.items():
    case(f"train/{_name}", train_config(BASE_CONFIG + _extra + "\n"))
case("train/not-utf8", train_config(BASE_CONFIG.encode() + b"# caf\xe9\n"))
case("train/utf16", train_config(BASE_CONFIG.encode("utf-16")))
case("train/top-level-list", train_config("- 1\n- 2\n"))
case("train/top-level-scalar", train_config("hello\n"))
case("train/empty-file", train_config(""))
case("train/missing-file", lambda tmp: ["train", str(tmp / "nope.yaml")])
case("train/override-bad-yaml", train_config(BASE_CONFIG, "loss.beta=["))
case("train/override-huge-int", train_config(BASE_CONFIG, "loss.beta=" + HUGE))
case("train/override-no-equals", train_config(BASE_CONFIG, "loss.beta"))
case("train/override-beta-negative", train_config(BASE_CONFIG, "loss.beta=-0.5"))

# ---------------------------------------------------------------------------------------------------------
# Eval suites: `prefgate eval --model M --suite S --out O` (the suite is checked before the model loads)

GOOD_ITEM = '{"id": "a", "category": "math", "prompt": "2+2?", "scorer": "exact", "answer": "4"}'


def suite(name: str, data: str | bytes) -> Builder:
    return lambda tmp: ["eval", "--model", str(tmp / "no-model"), "--suite", str(write(tmp / name, data)),
                        "--out", str(tmp / "e.json")]


BAD_ITEMS = {
    "syntax": "{x", "array": "[1]", "missing-category": '{"prompt": "p", "scorer": "exact", "answer": "4"}',
    "missing-prompt": '{"category": "m", "scorer": "exact", "answer": "4"}',
    "missing-scorer": '{"category": "m", "prompt": "p", "answer": "4"}',
    "unknown-scorer": '{"category": "m", "prompt": "p", "scorer": "nope", "answer": "4"}',
    "duplicate-id": GOOD_ITEM, "prompt-number": '{"category": "m", "prompt": 1, "scorer": "exact", "answer": "4"}',
    "empty-category": '{"category": " ", "prompt": "p", "scorer": "exact", "answer": "4"}',
    "duplicate-key": '{"category": "m", "prompt": "p", "prompt": "q", "scorer": "exact", "answer": "4"}',
    "surrogate": '{"category": "m", "prompt": "\\udc80", "scorer": "exact", "answer": "4"}',
    "deep": '{"category": "m", "prompt": "p", "scorer": "exact", "answer": ' + DEEP + "}",
    "huge-int": '{"category": "m", "prompt": "p", "scorer": "exact", "answer": ' + HUGE + "}",
}
for _name, _line in BAD_ITEMS.items():
    case(f"suite/{_name}", suite("s.jsonl", GOOD_ITEM + "\n" + _line + "\n"))
case("suite/not-utf8", suite("s.jsonl", GOOD_ITEM.encode() + b"\n\xff\n"))
case("suite/empty", suite("s.jsonl", ""))
case("suite/wrong-extension", suite("s.json", "[" + GOOD_ITEM + "]"))
case("suite/gz-truncated", suite("s.jsonl.gz", gz((GOOD_ITEM + "\n").encode() * 200)[:25]))
case("suite/gz-not-gzip", suite("s.jsonl.gz", GOOD_ITEM + "\n"))

# ---------------------------------------------------------------------------------------------------------
# Gate reports and policy: `prefgate gate BASELINE CANDIDATE`


def eval_report(**changes) -> dict:
    items = [{"id": f"{c}-{i}", "category": c, "score": float(i % 3 != 0)} for c in ("math", "safety")
             for i in range(30)]
    report = {"kind": "eval", "version": 1, "model": {"path": "m"}, "suite": {"path": "s", "fingerprint": FP},
              "overall": {"n": 60, "score": 0.66, "grade": "D"},
              "categories": {c: {"n": 30, "score": 0.66, "grade": "D"} for c in ("math", "safety")}, "items": items}
    report.update(changes)
    return report


def gate_pair(baseline: str | bytes | dict, *extra: str, candidate: dict | None = None) -> Builder:
    def build(tmp: Path) -> list[str]:
        base = baseline if isinstance(baseline, (str, bytes)) else json.dumps(baseline)
        cand = json.dumps(candidate or eval_report())
        return ["gate", str(write(tmp / "base.json", base)), str(write(tmp / "cand.json", cand)),
                *[x.format(tmp=tmp) for x in extra]]
    return build


_ITEM = {"id": "math-0", "category": "math", "score": 1.0}
GATE_BASELINES: dict[str, str | bytes | dict] = {
    "array": "[]", "array-of-reports": json.dumps([eval_report()]), "string": '"eval"', "number": "1", "null": "null",
    "empty-object": "{}", "kind-run": eval_report(kind="run"), "no-items": eval_report(items=None),
    "items-object": eval_report(items={"a": 1}), "items-empty": eval_report(items=[]),
    "item-not-object": eval_report(items=[1]), "item-without-id": eval_report(items=[{"category": "m", "score": 1}]),
    "score-above-one": eval_report(items=[dict(_ITEM, score=2)]),
    "score-negative": eval_report(items=[dict(_ITEM, score=-0.1)]),
    "score-text": eval_report(items=[dict(_ITEM, score="1")]),
    "score-bool": eval_report(items=[dict(_ITEM, score=True)]),
    "score-nan": json.dumps(eval_report(items=[dict(_ITEM, score=float("nan"))])),
    "duplicate-item-id": eval_report(items=[_ITEM, _ITEM]), "no-suite": eval_report(suite=None),
    "suite-list": eval_report(suite=[FP]), "other-fingerprint": eval_report(suite={"fingerprint": "0" * 64}),
    "categories-list": eval_report(categories=["math"]), "categories-string": eval_report(categories="math"),
    "fewer-items": eval_report(items=eval_report()["items"][:-1]),
    "moved-item": eval_report(items=[dict(it, category="safety") if it["id"] == "math-0" else it
                                     for it in eval_report()["items"]]),
    "duplicate-key": json.dumps(eval_report())[:-1] + ', "kind": "eval"}',
    "surrogate": json.dumps(eval_report()).replace('"m"', '"\\ud800"', 1),
    "deep": DEEP, "huge-int": '{"kind": "eval", "version": ' + HUGE + "}",
    "not-utf8": b'{"kind": "eval", "model": "\xff"}', "truncated": json.dumps(eval_report())[:100], "empty": "",
    "bom-then-garbage": b"\xef\xbb\xbf{x",
}
for _name, _base in GATE_BASELINES.items():
    case(f"gate/{_name}", gate_pair(_base))
case("gate/missing-file", lambda tmp: ["gate", str(tmp / "nope.json"), str(tmp / "nope2.json")])
case("gate/folder", lambda tmp: ["gate", str(tmp), str(write(tmp / "c.json", json.dumps(eval_report())))])


def gate_policy(text: str | bytes) -> Builder:
    def build(tmp: Path) -> list[str]:
        write(tmp / "policy.yaml", text)
        return gate_pair(eval_report(), "--policy", "{tmp}/policy.yaml")(tmp)
    return build


GATE_POLICIES = {
    "unknown-key": "alpah: 0.1\n", "duplicate-key": "alpha: 0.05\nalpha: 0.01\n", "alpha-nan": "alpha: .nan\n",
    "alpha-text": "alpha: low\n", "bad-yaml": "alpha: [\n", "top-level-list": "- 1\n",
    "not-utf8": b"alpha: 0.05 # \xff\n",
    "max-grade-drop-huge": "max_grade_drop: " + HUGE + "\n",
}
for _name, _text in GATE_POLICIES.items():
    case(f"gate-policy/{_name}", gate_policy(_text))

# ---------------------------------------------------------------------------------------------------------
# The registry database and run manifests: `prefgate registry list` / `registry add RUN_DIR`


def registry_db(make: Callable[[Path], None]) -> Builder:
    def build(tmp: Path) -> list[str]:
        os.environ["PREFGATE_HOME"] = str(tmp / "home")  # restored by the test's monkeypatch
        (tmp / "home").mkdir()
        make(tmp / "home" / "registry.db")
        return ["registry", "list"]
    return build


def _sqlite(*statements: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with sqlite3.connect(path) as conn:
            for statement in statements:
                conn.execute(statement)
        conn.close()
    return make


def _real_db_cut(n: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        from prefgate.registry import Registry

        with Registry(path.parent).connect():
            pass
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        path.write_bytes(path.read_bytes()[:n])
    return make


case("registry/random-bytes", registry_db(lambda p: p.write_bytes(random.Random(0).randbytes(8192))))
case("registry/text-file", registry_db(lambda p: p.write_text("not a database\n" * 100)))
case("registry/sqlite-header-then-garbage",
     registry_db(lambda p: p.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)))
case("registry/truncated-header", registry_db(_real_db_cut(50)))
case("registry/folder", registry_db(lambda p: p.mkdir()))
case("registry/newer-schema", registry_db(_sqlite(
    "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)",
    "INSERT INTO schema_version VALUES (999, 'future', 'now')")))
case("registry/foreign-schema-version", registry_db(_sqlite("CREATE TABLE schema_version (v TEXT)")))


def manifest(text: str | bytes | Callable[[dict], object]) -> Builder:
    def build(tmp: Path) -> list[str]:
        os.environ["PREFGATE_HOME"] = str(tmp / "home")
        run_dir = Build(tmp / "work").run("r1")
        if callable(text):
            data = Build.manifest(run_dir)
            write(run_dir / "manifest.json", json.dumps(text(data)))
        else:
            write(run_dir / "manifest.json", text)
        return ["registry", "add", str(run_dir)]
    return build


MANIFESTS: dict[str, str | bytes | Callable[[dict], object]] = {
    "array": "[]", "syntax": "{x", "empty": "", "deep": DEEP, "huge-int": '{"run_id": ' + HUGE + "}",
    "not-utf8": b'{"run_id": "\xff"}', "duplicate-key": '{"run_id": "a", "run_id": "b"}',
    "surrogate": '{"run_id": "\\ud800"}',
    "no-run-id": lambda m: {k: v for k, v in m.items() if k != "run_id"},
    "run-id-number": lambda m: dict(m, run_id=5), "artifacts-list": lambda m: dict(m, artifacts=[1]),
}
for _name, _text in MANIFESTS.items():
    case(f"manifest/{_name}", manifest(_text))

# ---------------------------------------------------------------------------------------------------------
# Human labels and the audit policy: `prefgate audit DATA --labels L` / `--config P`

PAIRS = "".join(json.dumps({"id": f"p{i}", "prompt": f"question {i}", "chosen": f"a good answer {i}",
                            "rejected": f"bad {i}"}) + "\n" for i in range(30))
GOOD_LABEL = '{"id": "p1", "preferred": "chosen", "rater": "ann"}'


def labels(name: str, data: str | bytes) -> Builder:
    return lambda tmp: ["audit", str(write(tmp / "pairs.jsonl", PAIRS)), "--labels", str(write(tmp / name, data))]


LABEL_FILES: dict[str, tuple[str, str | bytes]] = {
    "syntax": ("l.jsonl", GOOD_LABEL + "\n{x\n"),
    "duplicate-key": ("l.jsonl", '{"id": "p1", "preferred": "chosen", "preferred": "rejected", "rater": "a"}\n'),
    "surrogate": ("l.jsonl", '{"id": "p1", "preferred": "chosen", "rater": "\\ud800"}\n'),
    "deep": ("l.jsonl", DEEP + "\n"), "huge-int": ("l.jsonl", '{"id": ' + HUGE + "}\n"),
    "not-utf8": ("l.jsonl", b'{"id": "p1", "rater": "\xff"}\n'),
    "unknown-id": ("l.jsonl", '{"id": "nope", "preferred": "chosen", "rater": "a"}\n'),
    "bad-preferred": ("l.jsonl", '{"id": "p1", "preferred": "both", "rater": "a"}\n'),
    "gz-truncated": ("l.jsonl.gz", gz((GOOD_LABEL + "\n").encode() * 200)[:30]),
    "gz-not-gzip": ("l.jsonl.gz", GOOD_LABEL + "\n"),
    "empty": ("l.jsonl", ""),
}
for _name, (_file, _data) in LABEL_FILES.items():
    case(f"labels/{_name}", labels(_file, _data))


def audit_policy(text: str | bytes) -> Builder:
    return lambda tmp: ["audit", str(write(tmp / "pairs.jsonl", PAIRS)), "--config", str(write(tmp / "a.yaml", text))]


case("audit-policy/duplicate-key", audit_policy("identical:\n  fail_above: 0.1\n  fail_above: 0.2\n"))
case("audit-policy/share-nan", audit_policy("identical:\n  fail_above: .nan\n"))
case("audit-policy/not-utf8", audit_policy(b"seed: 0 # \xff\n"))
case("audit-policy/unknown-key", audit_policy("identicall: {}\n"))


# ---------------------------------------------------------------------------------------------------------
# The tests


@pytest.fixture()
def isolated(tmp_path, monkeypatch):
    """A fresh folder as the working directory and PREFGATE_HOME; the hub is offline."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def test_the_table_is_large_enough():
    assert len(CASES) >= 150, len(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_exits_2_with_one_line_and_no_traceback(name, isolated, runner):
    args = CASES[name](isolated)
    result = runner.invoke(app, args)
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        f"{name}: {type(result.exception).__name__}: {result.exception}")
    assert result.exit_code == 2, f"{name}: exit {result.exit_code}\n{output[-2000:]}"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    # A train config reports every problem at once, one line each (the empty file: model and data missing).
    several = name.startswith("train/") and len(set(errors)) == len(errors) > 1
    assert len(errors) == 1 or several, f"{name}: {result.stderr[-2000:]}"
    assert all(len(error) < 600 or "override" in error for error in errors), errors


# Random damage to good files: accepted (0) or refused (2), never a crash.

def _damage(data: bytes, rng: random.Random) -> bytes:
    pos = rng.randrange(len(data))
    kind = rng.choice(["cut", "flip", "drop", "insert", "duplicate"])
    if kind == "cut":
        return data[:pos]
    if kind == "flip":
        return data[:pos] + bytes([data[pos] ^ (1 << rng.randrange(8))]) + data[pos + 1:]
    if kind == "drop":
        return data[:pos] + data[pos + 1:]
    if kind == "insert":
        return data[:pos] + bytes([rng.choice(b'{}[]",:\\\n\x00\xff') ]) + data[pos:]
    end = min(len(data), pos + rng.randrange(1, 40))
    return data[:end] + data[pos:end] + data[end:]


GOOD_FILES = {
    "d.jsonl": PAIRS.encode(), "d.jsonl.gz": gz(PAIRS.encode()),
    "d.json": json.dumps([json.loads(x) for x in PAIRS.splitlines()]).encode(),
    "d.csv": b"prompt,chosen,rejected\n" + b"".join(f"q{i},a{i},b{i}\n".encode() for i in range(30)),
    "base.json": json.dumps(eval_report()).encode(),
}


@pytest.mark.parametrize("seed", range(6))
def test_random_damage_never_crashes(seed, isolated, runner):
    rng = random.Random(seed)
    for name, good in GOOD_FILES.items():
        for _ in range(4):
            path = write(isolated / name, _damage(good, rng))
            if name == "base.json":
                args = ["gate", str(path), str(write(isolated / "cand.json", json.dumps(eval_report())))]
            else:
                args = ["data", "validate", str(path), *(["--skip-invalid"] if rng.random() < 0.5 else [])]
            result = runner.invoke(app, args)
            assert "Traceback" not in result.stdout + result.stderr
            assert result.exit_code in (0, 1, 2), (name, result.exit_code, result.exception)
            assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
                f"{name}: {type(result.exception).__name__}: {result.exception}")


# Damaged model files: the model load fails with one line (these two load a tiny model, so they are not in
# the table above).

@pytest.mark.parametrize("cut", [5, 0.5])
def test_eval_on_a_truncated_safetensors_model_exits_2(tiny_dir, isolated, runner, cut):
    import shutil

    model = shutil.copytree(tiny_dir, isolated / "model")
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: cut if isinstance(cut, int) else int(len(data) * cut)])
    suite_path = write(isolated / "s.jsonl", GOOD_ITEM + "\n")
    result = runner.invoke(app, ["eval", "--model", str(model), "--suite", str(suite_path),
                                 "--out", str(isolated / "e.json")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().startswith(f"error: {model}: cannot load model: Error while deserializing header")
    assert not (isolated / "e.json").exists()


def test_eval_on_a_truncated_adapter_exits_2(tiny_dir, isolated, runner):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = isolated / "adapter"
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_dir), LoraConfig(r=2, target_modules="all-linear")
                   ).save_pretrained(adapter)
    json_path = adapter / "adapter_config.json"
    json_path.write_text(json.dumps(dict(json.loads(json_path.read_text()), base_model_name_or_path=str(tiny_dir))))
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    suite_path = write(isolated / "s.jsonl", GOOD_ITEM + "\n")
    result = runner.invoke(app, ["eval", "--model", str(adapter), "--suite", str(suite_path),
                                 "--out", str(isolated / "e.json")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if "error: " in line]  # after the progress bar
    assert len(errors) == 1 and errors[0].endswith(f"error: {adapter}: cannot load adapter: Error while deserializing "
                                                   "header: invalid header length")
