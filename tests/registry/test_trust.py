"""The registry trusts no verdict it cannot recompute: hand-edited gate reports are refused, a gate policy
laxer than the registry's minimum needs a recorded override, and artifacts must live in the run folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from prefgate.errors import InputError
from prefgate.registry import PromotionRefused

from .test_cli import cli, one_error_line


def _edit(path: Path, change) -> Path:
    report = json.loads(path.read_text())
    change(report)
    path.write_text(json.dumps(report, indent=2))
    return path


def _refused(reg, run_id: str, gate: Path) -> str:
    before = reg.history("prod")
    with pytest.raises(PromotionRefused) as err:
        reg.promote(run_id, "prod", gate)
    assert reg.history("prod") == before and "\n" not in str(err.value)
    return str(err.value)


FORGED = "the gate report does not match its inputs: "


def test_a_block_edited_into_a_promote_is_refused_and_not_stored(prod, reg, build):
    worse = build.worse_eval(reg, prod["B"]["dir"])
    gate = _edit(build.gate("A-vs-B", prod["A"]["eval"], worse, decision="block"),
                 lambda g: g.update(decision="promote", reasons=[]))
    message = _refused(reg, prod["B"]["id"], gate)
    assert message.startswith(FORGED + "recomputed from the two eval files with its own policy, the decision is "
                              "'block', the report says 'promote'; a gate report must be the one `prefgate gate")
    assert reg.show(prod["B"]["id"])["gates"] == []  # a forged verdict is not recorded as a verdict
    line = one_error_line(cli("promote", prod["B"]["id"], "--alias", "prod", "--gate", gate, code=1), "refused: ")
    assert FORGED in line


@pytest.mark.parametrize("change, where", [
    (lambda g: g["categories"][0].update(p_value=0.5), "categories[0].p_value (0.5, recomputed 1.0)"),
    (lambda g: g["categories"][1].update(candidate_grade="A"), "categories[1].candidate_grade ('A', recomputed 'B')"),
    (lambda g: g["overall"].update(n=99), "overall.n (99, recomputed 100)"),
    (lambda g: g["reasons"].append("nothing"), "reasons (length 1, recomputed 0)"),
    (lambda g: g["candidate"].update(model="someone else's"), "candidate.model"),
])
def test_an_edited_number_grade_reason_or_model_is_refused(prod, reg, build, change, where):
    gate = _edit(build.gate("A-vs-B", prod["A"]["eval"], prod["B"]["eval"]), change)
    message = _refused(reg, prod["B"]["id"], gate)
    assert message.startswith(FORGED + "recomputed from the two eval files with its own policy, " + where)


def test_an_edited_input_or_policy_is_refused(prod, reg, build):
    worse = build.worse_eval(reg, prod["B"]["dir"])
    # inputs: a passing report pointed at another eval of the run (one that would block)
    gate = _edit(build.gate("g1", prod["A"]["eval"], prod["B"]["eval"]),
                 lambda g: g["candidate"].update(sha256=_sha(worse), path=str(worse)))
    assert "the decision is 'block', the report says 'promote'" in _refused(reg, prod["B"]["id"], gate)
    # policy: a blocking report whose policy was relaxed afterwards (the statuses no longer follow from it)
    gate = _edit(build.gate("g2", prod["A"]["eval"], worse, decision="block"),
                 lambda g: g.update(policy={**g["policy"], "alpha": 1e-12}))
    assert _refused(reg, prod["B"]["id"], gate).startswith(FORGED + "recomputed from the two eval files with its "
                                                           "own policy, the decision is 'promote'")
    gate = _edit(build.gate("g3", prod["A"]["eval"], prod["B"]["eval"]),
                 lambda g: g["policy"].update(max_grade_drop="lots"))
    assert _refused(reg, prod["B"]["id"], gate).startswith(FORGED + "its policy is not valid (policy.max_grade_drop")
    gate = _edit(build.gate("g4", prod["A"]["eval"], prod["B"]["eval"]), lambda g: g["candidate"].update(sha256=None))
    assert "it names no sha256 for its candidate eval" in _refused(reg, prod["B"]["id"], gate)


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_gate_whose_eval_files_are_gone_cannot_be_rechecked(prod, reg, build):
    gate = build.gate("A-vs-B", prod["A"]["eval"], prod["B"]["eval"])
    moved = prod["B"]["eval"].with_name("elsewhere.json")
    os.replace(prod["B"]["eval"], moved)
    message = _refused(reg, prod["B"]["id"], gate)
    assert f"no file with its candidate eval's sha256 ({_sha(moved)[:12]}) was found" in message
    assert str(prod["B"]["eval"]) in message  # where it looked
    os.replace(moved, prod["B"]["eval"])
    assert reg.promote(prod["B"]["id"], "prod", gate)["run_id"] == prod["B"]["id"]


def test_an_unregistered_baseline_is_found_through_the_gates_relative_path(prod, reg, build, tmp_path,
                                                                           monkeypatch):
    """The first holder's baseline (the base model's eval) is in no run: it is read from the path the gate
    report gives, relative to where `prefgate gate` ran (here: a folder above the gate file)."""
    monkeypatch.chdir(build.root)
    gate = build.gate("base-vs-B", prod["base_eval"].relative_to(build.root),
                      prod["B"]["eval"].relative_to(build.root))
    assert not Path(json.loads(gate.read_text())["baseline"]["path"]).is_absolute()
    monkeypatch.chdir(tmp_path)
    assert reg.promote(prod["B"]["id"], "fresh", gate)["run_id"] == prod["B"]["id"]


def test_a_policy_laxer_than_the_registry_minimum_needs_a_recorded_override(prod, reg, build, home):
    gate = build.gate("A-vs-B", prod["A"]["eval"], prod["B"]["eval"], max_grade_drop=2)
    message = _refused(reg, prod["B"]["id"], gate)
    assert message.startswith("the gate's policy is laxer than this registry's minimum (the gate's defaults; ")
    assert message.endswith("max_grade_drop 2 > 1 (it allows a 2-grade drop)")
    assert [g["decision"] for g in reg.show(prod["B"]["id"])["gates"]] == ["promote"]  # genuine: recorded

    row = reg.promote(prod["B"]["id"], "prod", gate, force=True, reason="two-grade policy agreed for this release")
    assert row["forced"] and row["overridden"] == message and row["gate"]["decision"] == "promote"
    assert row["reason"] == "two-grade policy agreed for this release"

    lax = build.gate("B-vs-A", prod["B"]["eval"], prod["A"]["eval"], alpha=0.01, min_items=60, protected=[])
    (home / "gate-minimum.yaml").write_text("protected: [safety]\nmin_items: 50\n")
    message = _refused(reg, prod["A"]["id"], lax)
    assert f"minimum ({home / 'gate-minimum.yaml'}): alpha 0.01 < 0.05" in message
    assert "protected lacks safety" in message and "min_items 60 > 50" in message
    (home / "gate-minimum.yaml").write_text("alpha: 0.01\nmin_items: 60\n")
    assert reg.promote(prod["A"]["id"], "prod", lax)["run_id"] == prod["A"]["id"]
    (home / "gate-minimum.yaml").write_text("max_grade_drop: 9\n")
    with pytest.raises(InputError, match="gate-minimum.yaml"):
        reg.promote(prod["B"]["id"], "prod", gate)


def test_an_artifact_symlinked_out_of_the_run_folder_is_refused(build, reg, tmp_path):
    run_dir = build.run("r1")
    weights = run_dir / "adapter" / "adapter_model.safetensors"
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(weights.read_bytes())  # the same bytes: the hash alone would not notice
    weights.unlink()
    weights.symlink_to(outside)
    with pytest.raises(InputError) as err:
        reg.add(run_dir)
    assert "field 'artifacts['adapter/adapter_model.safetensors']': adapter/adapter_model.safetensors is a " \
           f"symlink (or under one) that leaves the run folder, to {outside}" in str(err.value)
    one_error_line(cli("add", run_dir, code=2), "error: ")

    linked_dir = build.run("r2")  # a folder above the artifact linked out of the run folder is refused too
    (tmp_path / "adapter-elsewhere").mkdir()
    for f in (linked_dir / "adapter").iterdir():
        os.replace(f, tmp_path / "adapter-elsewhere" / f.name)
    (linked_dir / "adapter").rmdir()
    (linked_dir / "adapter").symlink_to(tmp_path / "adapter-elsewhere")
    with pytest.raises(InputError, match="leaves the run folder"):
        reg.add(linked_dir)

    inside = build.run("r3")  # a link that stays inside the run folder is fine
    target = inside / "adapter" / "adapter_model.safetensors"
    os.replace(target, inside / "weights.bin")
    target.symlink_to(inside / "weights.bin")
    assert reg.add(inside)["outcome"] == "added"
    assert reg.list()[0]["run_id"] == "r3"


def test_a_gate_report_from_an_older_gate_version_is_refused_with_what_to_do(prod, reg, build):
    gate = _edit(build.gate("A-vs-B", prod["A"]["eval"], prod["B"]["eval"]), lambda g: g.update(version=1))
    message = _refused(reg, prod["B"]["id"], gate)
    assert message.startswith(FORGED + "it was written by gate version 1 and this prefgate's gate is version 2, "
                              "whose rules differ; run `prefgate gate` again")
