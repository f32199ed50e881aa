"""Step 0 agrees with TRL 1.16 `DPOTrainer`: loss, rewards/chosen, rewards/rejected within 1e-5.

The policy and the reference are two different tiny Llamas (seeds 0 and 1), so the step-0 numbers are not
the trivial log 2. Each test builds TRL's first batch from the same four pairs and compares with
prefgate's tokenisation, forward and loss on the same four pairs (the batch mean is order-free).
"""

from __future__ import annotations

import pytest
import torch

from prefgate.data import load_tokenizer, read_dataset
from prefgate.lm.load import load_causal_lm
from prefgate.losses import LossType
from prefgate.train.batches import collate, tokenize_dataset
from prefgate.train.step import batch_metrics, compute_batch_loss, forward_logps, means
from tests.train.conftest import write_pairs

# Equal-length chosen completions, so TRL's batch-level SFT token mean equals our per-example mean.
ROWS = [{"prompt": f"Question: name thing {i}\nAnswer:", "chosen": f" {w}.", "rejected": f" not {w} at all."}
        for i, w in enumerate(["cat", "sun", "yes", "blue"])]

CASES = [  # (TRL loss_type, TRL loss_weights, extra TRL args, prefgate loss, prefgate hyperparameters)
    (["sigmoid"], None, {}, "dpo", {"beta": 0.1}),
    (["hinge"], None, {}, "hinge", {"beta": 0.1}),
    (["ipo"], None, {}, "ipo", {"beta": 0.1}),
    (["robust"], None, {"label_smoothing": 0.2}, "robust", {"beta": 0.1, "eps": 0.2}),
    (["sigmoid", "sft"], [1.0, 0.5], {}, "rpo", {"beta": 0.1, "alpha": 0.5}),
]


def _trl_step0(tiny_dir, ref_dir, tmp_path, loss_type, weights, extra):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=4, max_length=None, beta=0.1,
                     loss_type=loss_type, loss_weights=weights, report_to=[], use_cpu=True, seed=0, bf16=False,
                     fp16=False, **extra)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_dir),
                         ref_model=AutoModelForCausalLM.from_pretrained(ref_dir), args=args,
                         train_dataset=Dataset.from_list(ROWS),
                         processing_class=AutoTokenizer.from_pretrained(tiny_dir))
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    m = trainer._metrics["train"]
    return float(loss), m["rewards/chosen"][-1], m["rewards/rejected"][-1], trainer.train_dataset


def _ours_step0(tiny_dir, ref_dir, tmp_path, loss, hyperparameters):
    tokenizer = load_tokenizer(str(tiny_dir))
    ds = read_dataset(write_pairs(tmp_path / "rows.jsonl", ROWS))
    loss_type = LossType(loss)
    data = tokenize_dataset(ds, tokenizer, loss_type, max_length=1024, max_prompt_length=None)
    batch = collate(data, list(range(len(ROWS))), pad_id=tokenizer.pad_token_id)
    policy, reference = load_causal_lm(str(tiny_dir)), load_causal_lm(str(ref_dir))
    with torch.no_grad():
        p, r = forward_logps(policy.train(), batch), forward_logps(reference.eval(), batch)
    out = compute_batch_loss(loss_type, hyperparameters, p, r, batch)
    m = means(batch_metrics(loss_type, out, p, r, batch))
    return m["loss"], m["rewards/chosen"], m["rewards/rejected"], data


@pytest.mark.parametrize(("trl_loss", "weights", "extra", "loss", "hp"), CASES, ids=[c[3] for c in CASES])
def test_step0_matches_trl(tiny_dir, ref_dir, tmp_path, trl_loss, weights, extra, loss, hp):
    trl_loss_value, trl_chosen, trl_rejected, trl_ds = _trl_step0(tiny_dir, ref_dir, tmp_path, trl_loss, weights, extra)
    ours_loss, ours_chosen, ours_rejected, data = _ours_step0(tiny_dir, ref_dir, tmp_path, loss, hp)
    # Same tokens first: prompt, chosen (EOS included) and rejected ids of every pair.
    for i, row in enumerate(trl_ds):
        assert data.rows[i][0] == (row["prompt_ids"], row["chosen_ids"])
        assert data.rows[i][1] == (row["prompt_ids"], row["rejected_ids"])
    assert len({len(data.rows[i][0][1]) for i in range(len(ROWS))}) == 1  # equal chosen lengths (see ROWS)
    assert abs(ours_loss - trl_loss_value) < 1e-5
    assert abs(ours_chosen - trl_chosen) < 1e-5
    assert abs(ours_rejected - trl_rejected) < 1e-5
    assert abs(ours_chosen - ours_rejected) > 1e-3  # a real, non-trivial comparison
