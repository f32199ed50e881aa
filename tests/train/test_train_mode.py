"""The policy trains in training mode with every dropout off (issue 17): `load_policy` leaves no dropout that can
fire (tiny Llama with attention_dropout 0.5, GPT-2 with resid/attn/embd pdrop 0.5, a LoRA adapter with
lora_dropout 0.5), so `model.gradient_checkpointing` really recomputes each layer in the backward and changes no
loss or gradient; the saved config.json keeps the dropout values the model was loaded with.

Each "dropout would fire" claim has its control: the same model put in training mode without `disable_dropout`
gives two different outputs for one input.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prefgate.data import read_dataset
from prefgate.losses import LossType
from prefgate.train.batches import collate, tokenize_dataset
from prefgate.train.loop import train
from prefgate.train.model import DROPOUT_MODULES, disable_dropout, load_policy, original_dropout_config
from prefgate.train.step import compute_batch_loss, forward_logps
from tests.train.conftest import losses, make_config

GPT2_DROPOUT = {"resid_pdrop": 0.5, "embd_pdrop": 0.5, "attn_pdrop": 0.5}


def _save(model, tokenizer, directory: Path) -> Path:
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def llama_dropout_dir(tmp_path_factory, tiny_tok) -> Path:
    """The tiny Llama with attention_dropout 0.5 (Llama has no other dropout field)."""
    from prefgate.tiny import tiny_llama

    model = tiny_llama(tiny_tok)
    model.config.attention_dropout = 0.5
    return _save(model, tiny_tok, tmp_path_factory.mktemp("llama-dropout"))


@pytest.fixture(scope="module")
def gpt2_dropout_dir(tmp_path_factory, tiny_tok) -> Path:
    """A tiny GPT-2 with resid, attn and embd pdrop 0.5 (summary_first_dropout keeps GPT-2's default 0.1)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tiny_tok), n_embd=32, n_layer=2, n_head=4, n_positions=128,
                        bos_token_id=tiny_tok.bos_token_id, eos_token_id=tiny_tok.eos_token_id,
                        pad_token_id=tiny_tok.pad_token_id, **GPT2_DROPOUT)
    torch.manual_seed(0)
    return _save(GPT2LMHeadModel(config), tiny_tok, tmp_path_factory.mktemp("gpt2-dropout"))


def _inputs(tokenizer) -> dict[str, torch.Tensor]:
    """Two rows of 12 tokens, the second left-padded by 3, as the trainer's batches have padding."""
    ids = tokenizer("Question: What is 12 plus 30? Answer: 42.", add_special_tokens=True)["input_ids"][:12]
    input_ids = torch.tensor([ids, [tokenizer.pad_token_id] * 3 + ids[:9]])
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :3] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def _logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, use_cache=False).logits.float()


def _perturb_lora(model) -> None:
    """LoRA's B starts at zero, which hides its dropout; random B makes the adapter (and its dropout) count."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


@pytest.mark.parametrize("kind", ["llama", "gpt2", "llama-lora"])
def test_the_policy_trains_in_training_mode_where_no_dropout_can_fire(kind, llama_dropout_dir, gpt2_dropout_dir,
                                                                      pairs_file, tmp_path, tiny_tok):
    from transformers import AutoModelForCausalLM

    model_dir = gpt2_dropout_dir if kind == "gpt2" else llama_dropout_dir
    lora = {"lora.r": 4, "lora.dropout": 0.5} if kind == "llama-lora" else {}
    policy = load_policy(make_config(model_dir, pairs_file, tmp_path / "run", **lora))
    if lora:
        _perturb_lora(policy)
    assert policy.training and all(m.training for m in policy.modules())
    inputs = _inputs(tiny_tok)
    first, second = _logits(policy, inputs), _logits(policy, inputs)
    assert torch.equal(first, second)  # no dropout mask: bit-identical
    policy.eval()
    assert (first - _logits(policy, inputs)).abs().max() < 1e-6  # and the eval-mode logits
    dropouts = [m for m in policy.modules() if isinstance(m, DROPOUT_MODULES)]
    assert all(m.p == 0.0 for m in dropouts)

    # The control: the same weights in training mode with dropout left on give two different outputs.
    if lora:  # the adapters' dropout put back alone
        control = policy.train()
        for name, module in control.named_modules():
            if "lora_dropout" in name and isinstance(module, DROPOUT_MODULES):
                module.p = 0.5
    else:
        control = AutoModelForCausalLM.from_pretrained(model_dir).train()
    assert (_logits(control, inputs) - _logits(control, inputs)).abs().max() > 1e-3


def test_disable_dropout_zeroes_each_kind_and_records_the_config_values(gpt2_dropout_dir, llama_dropout_dir):
    from transformers import AutoModelForCausalLM

    gpt2 = AutoModelForCausalLM.from_pretrained(gpt2_dropout_dir)
    record = disable_dropout(gpt2)
    # 2 layers x (attn_dropout, resid_dropout in attention, dropout in the MLP) + the embedding's `drop`
    assert record.modules == 7 and record.attributes == []
    assert record.describe()["config"] == {**GPT2_DROPOUT, "summary_first_dropout": 0.1}
    assert all(getattr(gpt2.config, name) == 0.0 for name in record.describe()["config"])

    llama = AutoModelForCausalLM.from_pretrained(llama_dropout_dir)
    record = disable_dropout(llama)
    assert record.modules == 0  # Llama reads attention_dropout as a float in each attention module
    assert record.attributes == ["model.layers.0.self_attn.attention_dropout",
                                 "model.layers.1.self_attn.attention_dropout"]
    assert all(layer.self_attn.attention_dropout == 0.0 for layer in llama.model.layers)
    assert record.describe()["config"] == {"attention_dropout": 0.5} and llama.config.attention_dropout == 0.0


# -- activation checkpointing -------------------------------------------------------------------------------


def _mlp_of_layer_0(model):
    return next(m for name, m in model.named_modules() if name.endswith("layers.0.mlp"))


def _one_step(config, batch, reference_logps) -> tuple[float, dict[str, torch.Tensor], int]:
    """(loss, gradients, calls of layer 0's MLP) of one DPO forward and backward on `batch`."""
    torch.manual_seed(0)  # the same fresh LoRA adapters each time, as the loop's seed gives
    policy = load_policy(config)
    calls = []
    _mlp_of_layer_0(policy).register_forward_pre_hook(lambda *_: calls.append(1))
    policy_logps = forward_logps(policy, batch)
    out = compute_batch_loss(LossType.DPO, {"beta": 0.1}, policy_logps, reference_logps, batch)
    loss = out.losses.mean()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in policy.named_parameters() if p.requires_grad}
    return float(loss.detach()), grads, len(calls)


@pytest.mark.parametrize("mode", ["selective", "full"])
@pytest.mark.parametrize("lora", [{}, {"lora.r": 4}], ids=["full", "lora"])
def test_checkpointing_recomputes_each_layer_and_changes_no_loss_or_gradient(lora, mode, tiny_dir, ref_dir, pairs_file,
                                                                            tiny_tok, tmp_path):
    from transformers import AutoModelForCausalLM

    data = tokenize_dataset(read_dataset(str(pairs_file)), tiny_tok, LossType.DPO, max_length=64,
                            max_prompt_length=None)
    batch = collate(data, [0, 1, 2, 3], pad_id=tiny_tok.pad_token_id)
    with torch.no_grad():  # another model as the reference, so the loss is not log 2 and the gradient not 0
        reference_logps = forward_logps(AutoModelForCausalLM.from_pretrained(ref_dir).eval(), batch)

    loss_off, grads_off, calls_off = _one_step(make_config(tiny_dir, pairs_file, tmp_path / "off", **lora), batch,
                                               reference_logps)
    loss_on, grads_on, calls_on = _one_step(make_config(tiny_dir, pairs_file, tmp_path / "on", **lora,
                                                        **{"model.gradient_checkpointing": mode}),
                                            batch, reference_logps)
    assert calls_off == 1 and calls_on == 2  # the forward, and with checkpointing its replay in the backward
    assert abs(loss_off - 0.6931471805599453) > 1e-3
    assert loss_on == pytest.approx(loss_off, abs=1e-6)
    assert set(grads_on) == set(grads_off) and len(grads_off) > 0
    assert max(float(g.abs().max()) for g in grads_off.values()) > 1e-4  # a real gradient
    assert max(float((grads_on[n] - grads_off[n]).abs().max()) for n in grads_off) < 1e-6


def test_a_checkpointed_run_recomputes_in_every_step_and_trains_the_same(tiny_dir, ref_dir, pairs_file, tmp_path,
                                                                          monkeypatch):
    """Through the loop (forward: auto, the prefix-shared layout on this model): layer 0's MLP runs with gradients
    twice as often with checkpointing (forward + replay); the passes without gradients (reference, probes) run
    once either way. Losses and gradient norms agree to 1e-6."""
    import prefgate.train.loop as loop_module

    counts: dict[str, dict[bool, int]] = {}

    def counting(name):
        def load(config):
            model = load_policy(config)
            seen = counts.setdefault(name, {True: 0, False: 0})  # calls with gradients enabled, and without

            def hook(*_):
                seen[torch.is_grad_enabled()] += 1

            _mlp_of_layer_0(model).register_forward_pre_hook(hook)
            return model
        return load

    common = {"max_steps": 3, "reference.model": str(ref_dir), "reference.strategy": "model"}
    monkeypatch.setattr(loop_module, "load_policy", counting("off"))
    off = train(make_config(tiny_dir, pairs_file, tmp_path / "off", **common), show_progress=False)
    monkeypatch.setattr(loop_module, "load_policy", counting("on"))
    on = train(make_config(tiny_dir, pairs_file, tmp_path / "on", **common, **{"model.gradient_checkpointing": True}),
               show_progress=False)
    assert counts["off"][True] >= 3 and counts["on"][True] == 2 * counts["off"][True]
    assert counts["on"][False] == counts["off"][False] > 0
    assert abs(losses(off.run_dir)[0] - 0.6931471805599453) > 1e-3
    assert losses(on.run_dir) == pytest.approx(losses(off.run_dir), abs=1e-6)
    norms = [[json.loads(line)["grad_norm"] for line in (r.run_dir / "metrics.jsonl").read_text().splitlines()]
             for r in (off, on)]
    assert norms[1] == pytest.approx(norms[0], abs=1e-6)
    manifest = json.loads((on.run_dir / "manifest.json").read_text())
    assert manifest["distributed"]["policy_mode"] == "train"


# -- what is saved ------------------------------------------------------------------------------------------


def _config_json(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_the_saved_config_keeps_the_original_dropout_values(kind, llama_dropout_dir, gpt2_dropout_dir, pairs_file,
                                                            tmp_path):
    model_dir = gpt2_dropout_dir if kind == "gpt2" else llama_dropout_dir
    expected = {**GPT2_DROPOUT, "summary_first_dropout": 0.1} if kind == "gpt2" else {"attention_dropout": 0.5}
    result = train(make_config(model_dir, pairs_file, tmp_path / "run", max_steps=1), show_progress=False)
    saved = _config_json(result.run_dir / "model")
    assert {name: saved[name] for name in expected} == expected
    assert {name: _config_json(model_dir)[name] for name in expected} == expected  # as loaded
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["dropout"]["config"] == expected
    assert manifest["distributed"]["policy_mode"] == "train"


def test_a_snapshot_and_a_lora_adapter_keep_the_original_dropout_values(llama_dropout_dir, pairs_file, tmp_path,
                                                                         tiny_tok):
    from prefgate.train import snapshot as snap

    policy = load_policy(make_config(llama_dropout_dir, pairs_file, tmp_path / "run"))
    with original_dropout_config(policy):
        snap.save_snapshot(policy, tiny_tok, tmp_path / "snap", step=1, why="test")
    assert _config_json(tmp_path / "snap")["attention_dropout"] == 0.5
    assert policy.config.attention_dropout == 0.0  # zeroed again after the save

    result = train(make_config(llama_dropout_dir, pairs_file, tmp_path / "lora", max_steps=1,
                               **{"lora.r": 4, "lora.dropout": 0.25}), show_progress=False)
    adapter = json.loads((result.run_dir / "adapter" / "adapter_config.json").read_text())
    assert adapter["lora_dropout"] == 0.25
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["dropout"]["modules"] > 0 and manifest["dropout"]["config"] == {"attention_dropout": 0.5}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["selective", "full"])
def test_fsdp_keeps_the_policy_in_training_mode_and_checkpointing_agrees(mode, tiny_dir, pairs_file, tmp_path):
    """2 CPU processes under FSDP2 with checkpointing, selective (torch's op-level cache around each layer, FSDP's
    parameter gathers inside it) or full: the policy ends the run in training mode, and the losses are those of one
    process without checkpointing."""
    from tests.train.test_fsdp import TOLERANCE, _launch

    one = train(make_config(tiny_dir, pairs_file, tmp_path / "one", batch_size=4, max_steps=3), show_progress=False)
    two = tmp_path / "two"
    _launch(make_config(tiny_dir, pairs_file, two, batch_size=2, max_steps=3,
                        **{"model.gradient_checkpointing": mode}), tmp_path, "fsdp.yaml")
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["distributed"]["type"] == "fsdp" and manifest["distributed"]["policy_mode"] == "train"
    assert losses(two) == pytest.approx(losses(one.run_dir), abs=TOLERANCE)
