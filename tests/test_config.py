"""Train config values and settings files that must fail at load (exit 2), before any model loads."""

from __future__ import annotations

import pytest

from prefgate.cli import app
from prefgate.config import load_train_config
from prefgate.errors import InputError

BASE = "model: {name_or_path: /no/such/model}\ndata: {train: /no/such/data.jsonl}\n"


def _load(tmp_path, text: str | bytes, *overrides: str):
    path = tmp_path / "c.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return load_train_config(path, list(overrides))


@pytest.mark.parametrize(("extra", "expected"), [
    ("loss: {beta: 0}", "field 'loss': hyperparameter 'beta' must be > 0, got 0"),
    ("loss: {beta: -0.1}", "field 'loss': hyperparameter 'beta' must be > 0, got -0.1"),
    ("loss: {beta: .nan}", "field 'loss': hyperparameter 'beta' must be a finite number, got nan"),
    ("loss: {beta: .inf}", "field 'loss': hyperparameter 'beta' must be a finite number, got inf"),
    ("loss: {beta: 'high'}", "field 'loss': hyperparameter 'beta' must be a number, got 'high'"),
    ("loss: {beta: true}", "field 'loss': hyperparameter 'beta' must be a number, got true/false"),
    ("loss: {beta: [0.1]}", "field 'loss': hyperparameter 'beta' must be a number, got a list"),
    ("loss: {beta: null}", "field 'loss': hyperparameter 'beta' must be a number, got null"),
    ("loss: {beta: " + "9" * 400 + "}", "hyperparameter 'beta' must be a finite number, got an integer of 400 digits"),
    ("loss: {type: dpop, lam: .nan}", "field 'loss': hyperparameter 'lam' must be a finite number, got nan"),
    ("loss: {type: ipo, length_normalize: 1}", "hyperparameter 'length_normalize' must be true or false, got 1"),
    ("optim: {lr: .inf}", "field 'optim.lr': Input should be a finite number"),
    ("optim: {lr: .nan}", "field 'optim.lr': Input should be a finite number"),
    ("optim: {lr: 0}", "field 'optim.lr': Input should be greater than 0"),
    ("optim: {lr: -1.0e-5}", "field 'optim.lr': Input should be greater than 0"),
    ("optim: {lr: 1.0e+39}", "field 'optim.lr': must be at most 3.403e+38 (the largest float32), got 1e+39"),
    ("optim: {lr: 'inf'}", "field 'optim.lr': Input should be a finite number"),
    ("optim: {eps: .nan}", "field 'optim.eps': Input should be a finite number"),
    ("monitor: {collapse_threshold: -.inf}", "field 'monitor.collapse_threshold': Input should be a finite number"),
])
def test_bad_values_fail_at_load(tmp_path, extra, expected):
    with pytest.raises(InputError) as err:
        _load(tmp_path, BASE + extra + "\n")
    assert str(err.value).startswith(f"{tmp_path / 'c.yaml'}: ") and expected in str(err.value), str(err.value)


def test_a_number_written_as_yaml_text_is_read_as_a_number(tmp_path):
    cfg = _load(tmp_path, BASE + "loss: {beta: 5e-2}\noptim: {lr: 1e-5}\n")  # YAML 1.1 reads both as strings
    assert cfg.loss.hyperparameters["beta"] == 0.05 and cfg.optim.lr == 1e-5


@pytest.mark.parametrize(("override", "expected"), [
    ("loss.beta=-1", "field 'loss': hyperparameter 'beta' must be > 0, got -1"),
    ("optim.lr=.nan", "field 'optim.lr': Input should be a finite number"),
    ("loss.beta=[", "override of 'loss.beta': invalid YAML: expected the node content"),
    ("loss.beta=" + "9" * 5000, "override of 'loss.beta': invalid YAML: Exceeds the limit (4300 digits)"),
])
def test_bad_overrides_fail_at_load(tmp_path, override, expected):
    with pytest.raises(InputError) as err:
        _load(tmp_path, BASE, override)
    assert expected in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("text", "expected"), [
    (BASE.encode() + b"seed: 1 # caf\xe9\n", ": not valid UTF-8 (byte 0xe9 at offset"),
    (BASE + "loss: {type: dpo}\nloss: {type: ipo}\n",
     ":4: invalid YAML: duplicate key 'loss' (first on line 3; the first value would be silently replaced)"),
    (BASE + "optim:\n  lr: 1.0e-5\n  lr: 2.0e-5\n", ":5: invalid YAML: duplicate key 'lr' (first on line 4;"),
    (BASE + "x: " + "[" * 1000 + "\n", ": invalid YAML: nested too deeply to read"),
    (BASE + "seed: " + "9" * 5000 + "\n", ": invalid YAML: Exceeds the limit (4300 digits)"),
])
def test_bad_settings_files(tmp_path, text, expected):
    with pytest.raises(InputError) as err:
        _load(tmp_path, text)
    assert str(err.value).startswith(str(tmp_path / "c.yaml") + expected), str(err.value)


def test_a_merge_key_may_be_overridden(tmp_path):
    cfg = _load(tmp_path, BASE + "optim:\n  <<: {lr: 1.0e-5, warmup_steps: 2}\n  lr: 2.0e-5\n")
    assert (cfg.optim.lr, cfg.optim.warmup_steps) == (2e-5, 2)


@pytest.mark.parametrize(("command", "name", "text"), [
    (["gate", "{a}", "{a}", "--policy", "{p}"], "gate.yaml", "alpha: 0.05\nalpha: 0.01\n"),
    (["audit", "{a}", "--config", "{p}"], "audit.yaml", "identical:\n  fail_above: 0.1\n  fail_above: 0.2\n"),
])
def test_duplicate_keys_in_policies_exit_2(tmp_path, runner, command, name, text):
    policy = tmp_path / name
    policy.write_text(text)
    args = [c.format(a=tmp_path / "unused.json", p=policy) for c in command]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {policy}:") and "duplicate key" in result.stderr


def test_train_stops_on_a_bad_config_before_loading_any_model(tmp_path, runner, monkeypatch):
    import prefgate.lm.load as load

    monkeypatch.setattr(load, "load_causal_lm", lambda *a, **k: pytest.fail("a model was loaded"))
    path = tmp_path / "c.yaml"
    path.write_text(BASE + "loss: {beta: 0}\n")
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {path}: field 'loss': hyperparameter 'beta' must be > 0, got 0"


def test_trl_loss_names_are_accepted_where_the_math_is_ours(tmp_path):
    from prefgate.losses import LossType

    cfg = _load(tmp_path, BASE + "loss: {type: sigmoid, beta: 0.2}\n")
    assert cfg.loss.type is LossType.DPO and cfg.loss.hyperparameters == {"beta": 0.2}
    with pytest.raises(InputError) as err:
        _load(tmp_path, BASE + "loss: {type: sppo_hard}\n")
    assert str(err.value).startswith(f"{tmp_path / 'c.yaml'}: field 'loss.type': TRL's loss_type 'sppo_hard' has no "
                                     "equivalent here: SPPO (Wu et al. 2024)")
    with pytest.raises(InputError, match=r"unknown loss type 'dpx'; expected one of: dpo, .* \(or TRL's 'sigmoid'"):
        _load(tmp_path, BASE + "loss: {type: dpx}\n")


FIFTEEN_MISTAKES = """\
model: {name_or_path: /no/such/model, tokenizr: x}
data: {train: /no/such/data.jsonl, max_length: 1, skip_invalid: maybe}
loss: {type: sigmoid, beta: 0, gamma: 1}
lora: {r: 0, dropout: 1.5, target_modules: 7}
optim: {lr: -1, schedule: cosine_with_restarts, warmup_steps: -2}
batch_size: 0
precision: bf17
epochs: 0
learning_rate: 1.0e-6
"""


def test_train_reports_every_config_error_at_once(tmp_path, runner):
    path = tmp_path / "c.yaml"
    path.write_text(FIFTEEN_MISTAKES)
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert all(line.startswith(f"error: {path}: field '") for line in lines)
    fields = [line.split("field '")[1].split("'")[0] for line in lines]
    assert fields == ["model.tokenizr", "data.max_length", "data.skip_invalid", "loss", "loss", "lora.r",
                      "lora.dropout", "lora.target_modules", "optim.lr", "optim.schedule", "optim.warmup_steps",
                      "batch_size", "epochs", "precision", "learning_rate"]
    assert f"error: {path}: field 'loss': hyperparameter 'beta' must be > 0, got 0" in lines
    assert f"error: {path}: field 'lora.target_modules': Input should be a valid list, or Input should be " \
           "'all-linear'" in lines
