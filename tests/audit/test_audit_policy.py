"""The audit policy: one place for every default, strict YAML, the shipped example equal to the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from prefgate.audit import AuditPolicy, check_style_only, load_policy, policy_from_dict, run_audit
from prefgate.errors import InputError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "audit.yaml"


def _keys(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        out.add(prefix + key)
        if isinstance(value, dict):
            out |= _keys(value, prefix + key + ".")
    return out


def test_example_equals_the_defaults():
    assert load_policy(EXAMPLE) == AuditPolicy()


def test_example_lists_every_setting():
    assert _keys(yaml.safe_load(EXAMPLE.read_text())) == _keys(AuditPolicy().to_dict())


def test_every_check_has_a_policy():
    from prefgate.audit import CHECK_IDS

    for check_id in CHECK_IDS:
        assert AuditPolicy().check(check_id).enabled is True


def test_partial_override_keeps_other_defaults(tmp_path):
    path = tmp_path / "audit.yaml"
    path.write_text("style_only:\n  warn_above: 0.5\n  fail_above: 0.9\nshortcut:\n  enabled: false\n")
    policy = load_policy(path)
    assert (policy.style_only.warn_above, policy.style_only.fail_above) == (0.5, 0.9)
    assert policy.identical == AuditPolicy().identical
    assert policy.shortcut.enabled is False


def test_empty_file_is_the_defaults(tmp_path):
    path = tmp_path / "audit.yaml"
    path.write_text("# nothing\n")
    assert load_policy(path) == AuditPolicy()


@pytest.mark.parametrize("text, expected", [
    ("style_only:\n  warn_abov: 0.1\n", r"audit.yaml: field 'style_only.warn_abov': unknown key"),
    ("nonsense: 1\n", r"field 'nonsense': unknown key"),
    ("identical:\n  fail_above: 1.5\n", r"field 'identical.fail_above': .*less than or equal to 1"),
    ("style_only:\n  warn_above: 0.5\n  fail_above: 0.2\n", r"warn_above \(0.5\) is above fail_above"),
    ("- a list\n", r"expected a mapping"),
    ("identical: [\n", r"audit.yaml:\d+: invalid YAML"),
])
def test_bad_policy_is_one_line_input_error(tmp_path, text, expected):
    path = tmp_path / "audit.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=expected) as err:
        load_policy(path)
    assert "\n" not in str(err.value)


def test_missing_policy_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_policy(tmp_path / "nope.yaml")


def test_a_threshold_override_changes_the_status(pairs):
    from dataclasses import replace

    planted = [replace(p, rejected=p.chosen.upper()) if i < 6 else p for i, p in enumerate(pairs)]  # 10%
    assert check_style_only(planted).status == "warn"
    relaxed = policy_from_dict({"style_only": {"warn_above": 0.2, "fail_above": 0.3}})
    assert check_style_only(planted, relaxed).status == "pass"


def test_a_disabled_check_is_skipped(pairs):
    from dataclasses import replace

    planted = [replace(p, rejected=p.chosen) for p in pairs]
    report = run_audit(planted, policy=policy_from_dict({"identical": {"enabled": False}}))
    identical = next(c for c in report["checks"] if c["id"] == "identical")
    assert identical["status"] == "skip"
    assert "disabled" in identical["message"]
