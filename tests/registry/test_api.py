"""The Python API: add, list, show, promote (and its refusals and overrides), rollback, history, verify,
and the schema migrations."""

from __future__ import annotations

import json
import sqlite3

import pytest

from prefgate.errors import InputError
from prefgate.registry import MIGRATIONS, SCHEMA_VERSION, Migration, PromotionRefused, Registry
from prefgate.registry import schema as registry_schema

from .conftest import EVAL_FP, SUITE_FP, TRAIN_FP, sha256_of

# ---------------------------------------------------------------------------------------------------------
# add, list, show


def test_add_then_show_returns_every_field_of_the_manifest_and_the_eval(build, reg, home):
    run_dir = build.run("20261123-142501-dpo-ab12cd", beta=0.25)
    ev = build.eval("e", {"path": str(run_dir), "base": "org/tiny-sft", "adapter": str(run_dir / "adapter")})
    result = reg.add(run_dir, evals=[ev])

    assert result["outcome"] == "added" and result["evals_added"] == [sha256_of(ev)]
    assert (home / "registry.db").is_file()
    d = reg.show("20261123-142501-dpo-ab12cd")
    assert d["datasets"]["train"] == {"path": "data/train.jsonl", "fingerprint": TRAIN_FP, "n_records": 900,
                                      "audit_verdict": "pass"}
    assert d["datasets"]["eval"]["fingerprint"] == EVAL_FP
    assert d["loss"] == {"type": "dpo", "beta": 0.25, "label_smoothing": 0.0}
    assert d["config"] == build.manifest(run_dir)["config"]  # every hyperparameter, nested as written
    assert d["final_metrics"]["rewards/accuracies"] == 0.82
    assert d["code_version"] == {"prefgate": "0.1.0", "git_commit": "abc1234"}
    assert d["added_by"] == "tester" and d["base_model"] == "org/tiny-sft"
    assert {a["name"]: a["sha256"] for a in d["artifacts"]} == build.manifest(run_dir)["artifacts"]
    assert [a["path"] for a in d["artifacts"]] == [str(run_dir / a["name"]) for a in d["artifacts"]]
    (e,) = d["evals"]
    assert e["sha256"] == sha256_of(ev) and e["suite_fingerprint"] == SUITE_FP
    assert e["model"] == str(run_dir / "adapter") and e["overall"]["score"] == 0.8 and "math" in e["categories"]
    assert d["gates"] == [] and d["aliases"] == []
    json.dumps(d)  # plain data all the way down


def test_show_accepts_a_unique_prefix_and_refuses_an_ambiguous_or_unknown_one(build, reg):
    for run_id in ("20261123-aaa", "20261123-abb", "20261124-ccc"):
        reg.add(build.run(run_id))
    assert reg.show("20261124")["run_id"] == "20261124-ccc"
    with pytest.raises(InputError, match="ambiguous: it starts 20261123-aaa, 20261123-abb"):
        reg.show("20261123-a")
    with pytest.raises(InputError, match="no run 'nope' in the registry"):
        reg.show("nope")
    with pytest.raises(InputError, match="no run '' in the registry"):
        reg.show("")


def test_list_summarises_each_run_with_the_aliases_it_holds(prod, reg):
    runs = {r["run_id"]: r for r in reg.list()}
    assert set(runs) == {prod["A"]["id"], prod["B"]["id"]}
    a = runs[prod["A"]["id"]]
    assert a["aliases"] == ["prod"] and a["n_evals"] == 1 and a["beta"] == 0.1 and a["loss_type"] == "dpo"
    assert a["train_fingerprint"] == TRAIN_FP and runs[prod["B"]["id"]]["aliases"] == []


def test_readding_is_idempotent_attaches_new_evals_and_records_a_moved_folder(build, reg, tmp_path):
    run_dir = build.run("r1")
    reg.add(run_dir)
    ev = build.eval("later", "r1")
    again = reg.add(run_dir, evals=[ev, ev])
    assert again["outcome"] == "unchanged" and again["evals_added"] == [sha256_of(ev)]
    assert reg.add(run_dir, evals=[ev])["evals_known"] == [sha256_of(ev)]

    moved = run_dir.rename(tmp_path / "moved-r1")
    assert not reg.verify()["ok"]  # the old paths are gone
    assert reg.add(moved)["outcome"] == "relocated"
    assert reg.verify()["ok"] and reg.show("r1")["run_dir"] == str(moved)
    assert len(reg.list()) == 1


def test_readding_a_run_id_with_a_different_manifest_is_refused(build, reg):
    run_dir = build.run("r1")
    reg.add(run_dir)
    manifest = build.manifest(run_dir)
    manifest["loss"]["beta"] = 0.5
    build.write_manifest(run_dir, manifest)
    with pytest.raises(InputError, match="field 'run_id': run r1 is already registered with a different manifest"):
        reg.add(run_dir)
    assert reg.show("r1")["loss"]["beta"] == 0.1


def _drop(manifest: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        manifest = manifest[key]
    del manifest[last]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.update(kind="eval"), "field 'kind': expected \"run\", got 'eval'"),
    (lambda m: _drop(m, "run_id"), "field 'run_id': missing"),
    (lambda m: _drop(m, "loss.type"), "field 'loss.type': missing"),
    (lambda m: _drop(m, "final_metrics"), "field 'final_metrics': missing"),
    (lambda m: m.update(status="running"), "field 'status': expected one of 'completed', 'aborted', got 'running'"),
    (lambda m: m["datasets"]["train"].update(fingerprint="abc"), "field 'datasets.train.fingerprint': expected 64"),
    (lambda m: m["datasets"]["train"].update(n_records="900"), "field 'datasets.train.n_records': expected int, got"),
    (lambda m: m["audit"].update(verdict="ok"), "field 'audit.verdict': expected one of 'pass', 'warn', 'fail', null"),
    (lambda m: m.update(version=2), "field 'version': manifest version 2 is newer"),
    (lambda m: m.update(artifacts={"../x.bin": "0" * 64}), "expected a path inside the run folder, got '../x.bin'"),
    (lambda m: m.update(artifacts={"adapter/a.bin": "xyz"}), "field 'artifacts['adapter/a.bin']': expected a sha256"),
    (lambda m: m.update(artifacts={"adapter/gone.bin": "0" * 64}), "does not match its manifest: adapter/gone.bin is"),
])
def test_add_refuses_a_bad_manifest_with_one_line_naming_the_file_and_field(build, reg, edit, message):
    run_dir = build.run("r1")
    manifest = build.manifest(run_dir)
    edit(manifest)
    build.write_manifest(run_dir, manifest)
    with pytest.raises(InputError) as err:
        reg.add(run_dir)
    assert str(err.value).startswith(str(run_dir / "manifest.json") + ": ")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert reg.list() == []


def test_add_refuses_a_changed_artifact_a_missing_manifest_and_a_bad_eval(build, reg, tmp_path):
    run_dir = build.run("r1")
    (run_dir / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(InputError, match="adapter/adapter_config.json has sha256 .* the manifest says"):
        reg.add(run_dir)
    with pytest.raises(InputError, match="not a run folder: it has no manifest.json"):
        reg.add(tmp_path)
    with pytest.raises(InputError, match="no such folder"):
        reg.add(tmp_path / "nope")

    good = build.run("r2")
    bad_eval = build.eval("bad", "r2")
    bad_eval.write_text(json.dumps({"kind": "gate"}))
    with pytest.raises(InputError, match=r"bad.json: field 'kind': expected \"eval\", got 'gate'"):
        reg.add(good, evals=[bad_eval])
    bad_eval.write_text("{not json")
    with pytest.raises(InputError, match=r"bad.json:1: not a valid JSON file"):
        reg.add(good, evals=[bad_eval])
    assert reg.list() == []  # nothing half-added


def test_an_eval_belongs_to_one_run(build, reg):
    ev = build.eval("e", "r1")
    reg.add(build.run("r1"), evals=[ev])
    with pytest.raises(InputError, match="already registered for run r1"):
        reg.add(build.run("r2"), evals=[ev])
    assert [r["run_id"] for r in reg.list()] == ["r1"]  # the whole add was rolled back


def test_an_aborted_run_without_eval_data_or_artifacts_can_be_registered(build, reg):
    run_dir = build.run("r1", status="aborted", eval_data=False, audit=None)
    manifest = build.manifest(run_dir)
    manifest["artifacts"] = {}
    build.write_manifest(run_dir, manifest)
    reg.add(run_dir)
    d = reg.show("r1")
    assert d["status"] == "aborted" and list(d["datasets"]) == ["train"] and d["artifacts"] == []


# ---------------------------------------------------------------------------------------------------------
# promote, refusals, overrides


def test_first_promotion_records_the_gate_and_the_base_models_eval(prod, reg):
    (row,) = reg.history("prod")
    assert row["run_id"] == prod["A"]["id"] and row["previous_run_id"] is None and row["action"] == "promote"
    assert row["baseline_eval_sha256"] == sha256_of(prod["base_eval"])  # not a registered eval: recorded anyway
    assert row["candidate_eval_sha256"] == sha256_of(prod["A"]["eval"])
    assert row["gate"]["decision"] == "promote" and not row["forced"] and row["actor"] == "tester"
    assert reg.holder("prod") == prod["A"]["id"] and reg.holder("staging") is None
    gates = reg.show(prod["A"]["id"])["gates"]
    assert [(g["role"], g["decision"]) for g in gates] == [("candidate", "promote")]


def test_promotion_through_a_gate_against_the_holder(prod, reg, build):
    gate = build.gate("A-vs-B", prod["A"]["eval"], prod["B"]["eval"])
    row = reg.promote(prod["B"]["id"], "prod", gate)
    assert row["seq"] == 2 and row["run_id"] == prod["B"]["id"] and row["previous_run_id"] == prod["A"]["id"]
    assert reg.holder("prod") == prod["B"]["id"]
    assert [g["role"] for g in reg.show(prod["A"]["id"])["gates"]] == ["candidate", "baseline"]


def _refused(reg, *args, **kwargs) -> str:
    before = reg.history("prod")
    with pytest.raises(PromotionRefused) as err:
        reg.promote(*args, **kwargs)
    assert reg.history("prod") == before  # nothing moved
    assert "\n" not in str(err.value)
    return str(err.value)


def test_promotion_is_refused_when_the_gate_blocks(prod, reg, build):
    worse = build.worse_eval(reg, prod["B"]["dir"])
    gate = build.gate("A-vs-B", prod["A"]["eval"], worse, decision="block")
    message = _refused(reg, prod["B"]["id"], "prod", gate)
    assert message.startswith("the gate's decision is block: overall score dropped: 0.800 (B) -> 0.500 (F), n=100")
    assert message.endswith("(and 2 more)")
    assert [g["decision"] for g in reg.show(prod["B"]["id"])["gates"]] == ["block"]  # the verdict is stored


def test_promotion_is_refused_when_the_gates_evals_are_not_this_runs_and_the_holders(prod, reg, build):
    stray = build.eval("stray", "someone else")
    message = _refused(reg, prod["B"]["id"], "prod", build.gate("g1", prod["A"]["eval"], stray))
    assert message.startswith(f"the gate's candidate eval (sha256 {sha256_of(stray)[:12]}) is not an eval "
                              f"registered for run {prod['B']['id']}")
    message = _refused(reg, prod["B"]["id"], "prod", build.gate("g2", prod["base_eval"], prod["B"]["eval"]))
    assert f"is not an eval of {prod['A']['id']}, the current holder of 'prod'" in message


def test_promotion_is_refused_for_an_aborted_run_and_for_the_current_holder(prod, reg, build):
    aborted = build.run("r-aborted", status="aborted")
    ev = build.eval("aborted", "r-aborted")
    reg.add(aborted, evals=[ev])
    assert "is aborted; only a completed run" in _refused(reg, "r-aborted", "prod",
                                                          build.gate("g", prod["A"]["eval"], ev))
    gate = build.gate("self", prod["A"]["eval"], prod["A"]["eval"])
    assert "already holds 'prod'" in _refused(reg, prod["A"]["id"], "prod", gate, force=True, reason="again")


def test_promotion_needs_a_gate_or_a_reasoned_override(prod, reg, build):
    with pytest.raises(InputError, match="field 'gate': a promotion needs the gate report"):
        reg.promote(prod["B"]["id"], "prod")
    with pytest.raises(InputError, match="field 'reason': an override needs a reason"):
        reg.promote(prod["B"]["id"], "prod", force=True, reason="  ")
    with pytest.raises(InputError, match="field 'alias'"):
        reg.promote(prod["B"]["id"], "prod/../x", force=True, reason="r")
    with pytest.raises(InputError, match="no such file"):
        reg.promote(prod["B"]["id"], "prod", build.root / "nope.json")
    not_a_gate = build.eval("not-a-gate", "x")
    with pytest.raises(InputError, match="field 'kind': expected \"gate\", got 'eval'"):
        reg.promote(prod["B"]["id"], "prod", not_a_gate)
    with pytest.raises(InputError, match="no run 'nope'"):
        reg.promote("nope", "prod", build.gate("g", prod["A"]["eval"], prod["B"]["eval"]))


def test_forced_promotion_records_who_when_why_and_what_it_overrode(prod, reg, build):
    gate = build.gate("A-vs-B", prod["A"]["eval"], build.worse_eval(reg, prod["B"]["dir"]), decision="block")
    row = reg.promote(prod["B"]["id"], "prod", gate, force=True, reason="hotfix: A leaks PII\n(ticket 42)")
    assert row["forced"] and row["reason"] == "hotfix: A leaks PII (ticket 42)" and row["actor"] == "tester"
    assert row["overridden"].startswith("the gate's decision is block: overall score dropped")
    assert row["gate"]["decision"] == "block" and row["at"].startswith("20")
    assert reg.holder("prod") == prod["B"]["id"] and reg.history("prod")[-1] == row

    no_gate = reg.promote(prod["A"]["id"], "prod", force=True, reason="back to A")
    assert no_gate["overridden"] == "no gate report was given" and no_gate["gate"] is None


def test_a_passing_gate_with_force_is_not_marked_as_an_override(prod, reg, build):
    gate = build.gate("A-vs-B", prod["A"]["eval"], prod["B"]["eval"])
    row = reg.promote(prod["B"]["id"], "prod", gate, force=True, reason="belt and braces")
    assert not row["forced"] and row["overridden"] is None and row["reason"] == "belt and braces"


# ---------------------------------------------------------------------------------------------------------
# rollback, history


def test_rollback_walks_back_through_the_holders_and_is_recorded(prod, reg, build):
    c_dir = build.run("20261123-run-C")
    c_eval = build.eval("eval-C", "C")
    reg.add(c_dir, evals=[c_eval])
    a, b, c = prod["A"]["id"], prod["B"]["id"], "20261123-run-C"
    reg.promote(b, "prod", build.gate("A-vs-B", prod["A"]["eval"], prod["B"]["eval"]))
    reg.promote(c, "prod", build.gate("B-vs-C", prod["B"]["eval"], c_eval))

    first = reg.rollback("prod", reason="C regressed on math")
    assert (first["action"], first["run_id"], first["previous_run_id"]) == ("rollback", b, c)
    assert first["reason"] == "C regressed on math" and first["actor"] == "tester"
    assert reg.rollback("prod")["run_id"] == a  # not back to C: rollbacks walk back
    with pytest.raises(PromotionRefused, match=f"'prod' has no previous holder to roll back to \\(held by {a}\\)"):
        reg.rollback("prod")
    reg.promote(b, "prod", build.gate("A-vs-B", prod["A"]["eval"], prod["B"]["eval"]))
    assert reg.rollback("prod")["run_id"] == a

    rows = reg.history("prod")
    assert [(r["seq"], r["action"], r["run_id"]) for r in rows] == [
        (1, "promote", a), (2, "promote", b), (3, "promote", c), (4, "rollback", b), (5, "rollback", a),
        (6, "promote", b), (7, "rollback", a)]
    assert all(r["previous_run_id"] == p["run_id"] for p, r in zip(rows, rows[1:], strict=False))
    assert reg.holder("prod") == a


def test_rollback_and_history_of_an_unknown_alias_are_input_errors(reg, prod):
    with pytest.raises(InputError, match="no alias 'staging' in the registry"):
        reg.rollback("staging")
    with pytest.raises(InputError, match="no alias 'staging' in the registry"):
        reg.history("staging")


# ---------------------------------------------------------------------------------------------------------
# verify


def test_verify_catches_an_adapter_changed_by_one_byte_and_a_missing_file(prod, reg):
    assert reg.verify() == {"runs": 2, "checked": 4, "problems": [], "ok": True}
    weights = prod["B"]["dir"] / "adapter" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of one byte
    weights.write_bytes(bytes(data))
    (prod["A"]["dir"] / "adapter" / "adapter_config.json").unlink()

    result = reg.verify()
    assert not result["ok"] and result["checked"] == 4
    by_status = {p["status"]: p for p in result["problems"]}
    assert set(by_status) == {"missing", "modified"}
    assert by_status["modified"]["name"] == "adapter/adapter_model.safetensors"
    assert by_status["modified"]["run_id"] == prod["B"]["id"] and by_status["modified"]["actual"] == sha256_of(weights)
    assert by_status["missing"]["run_id"] == prod["A"]["id"] and by_status["missing"]["actual"] is None


def test_verify_of_an_empty_registry_is_ok(reg):
    assert reg.verify() == {"runs": 0, "checked": 0, "problems": [], "ok": True}


# ---------------------------------------------------------------------------------------------------------
# the database: WAL, location, migrations


def test_the_database_is_wal_at_prefgate_home_and_defaults_to_dot_prefgate(reg, home, tmp_path, monkeypatch):
    reg.list()
    with sqlite3.connect(home / "registry.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    monkeypatch.delenv("PREFGATE_HOME")
    monkeypatch.chdir(tmp_path)
    assert Registry().db_path == tmp_path / ".prefgate" / "registry.db"
    assert Registry(tmp_path / "elsewhere").db_path == tmp_path / "elsewhere" / "registry.db"


_V2 = Migration("synthetic: a note on every run", (
    "ALTER TABLE runs ADD COLUMN note TEXT NOT NULL DEFAULT ''",
    "UPDATE runs SET note = 'migrated'",
))


def test_opening_an_older_database_applies_the_missing_migrations_once(prod, reg):
    path = reg.db_path
    conn = registry_schema.connect(path, MIGRATIONS + (_V2,))
    try:
        assert registry_schema.current_version(conn) == SCHEMA_VERSION + 1
        assert {r[0] for r in conn.execute("SELECT note FROM runs")} == {"migrated"}
        assert registry_schema.migrate(conn, MIGRATIONS + (_V2,)) == SCHEMA_VERSION + 1  # a no-op the second time
        versions = [tuple(r)[:2] for r in conn.execute("SELECT version, name FROM schema_version ORDER BY version")]
        assert versions == [(1, "initial schema"), (2, "synthetic: a note on every run")]
    finally:
        conn.close()
    # the data survived, and this prefgate (which knows only v1) refuses a database from a newer one
    with pytest.raises(InputError, match="schema version 2 but this prefgate knows versions up to 1"):
        reg.list()


def test_a_failed_migration_leaves_the_database_at_its_old_version(prod, reg):
    broken = Migration("broken", ("ALTER TABLE runs ADD COLUMN x TEXT", "SELECT * FROM no_such_table"))
    with pytest.raises(sqlite3.OperationalError):
        registry_schema.connect(reg.db_path, MIGRATIONS + (broken,))
    with sqlite3.connect(reg.db_path) as conn:
        assert "x" not in [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
        assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    assert reg.holder("prod") == prod["A"]["id"]
