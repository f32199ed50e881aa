"""Activation checkpointing of a transformers model's decoder layers: `selective` or `full`.

- `full`: transformers' own non-reentrant checkpointing. Each layer keeps only its input; the backward recomputes
  the whole layer (one more forward's worth of compute).
- `selective`: the same per-layer checkpoint with torch's selective activation checkpointing
  (`torch.utils.checkpoint.create_selective_checkpoint_contexts`, as torchtitan's op-level SAC): the outputs of
  the matrix multiplications and attention kernels are kept from the forward, everything else in the layer (the
  norms, rotary embedding, SiLU and the gate product, residual adds, casts) is recomputed in the backward from
  them. Those element-wise intermediates are a third of a Llama layer's saved activations (four of the MLP's
  intermediate-size tensors become two) and cost almost nothing to recompute.

Both give the same losses and gradients as no checkpointing (the recomputed ops are deterministic and dropout is
off during training, `prefgate.train.model`). transformers checkpoints only in training mode.

`auto` (`resolve`) takes `selective` for models with a hidden size of at least 512 and `off` below: selective
checkpointing intercepts every op of a layer in Python, a fixed cost per op that a small model's step feels
(`benchmarks/checkpointing.py` on CPU: +25% at hidden size 128, where activations take little memory anyway,
+16% at 512, none at 768) and a real step hardly does (58M parameters, 5,628-token steps: within run-to-run
variation, 24% less peak memory; BENCHMARKS.md).
"""

from __future__ import annotations

import functools

import torch

MODES = ("off", "selective", "full")
AUTO_MIN_HIDDEN = 512  # `auto` takes selective from this hidden size on (module docstring)


def _saved_ops() -> frozenset:
    """Ops whose outputs `selective` keeps: the compute-heavy ones (matmuls and attention), as torchtitan."""
    aten = torch.ops.aten
    names = ("mm", "addmm", "bmm", "_scaled_dot_product_flash_attention_for_cpu",
             "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
             "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_fused_attention_overrideable",
             "_scaled_dot_product_attention_math")
    ops = {getattr(aten, name).default for name in names if hasattr(aten, name)}
    if hasattr(torch.ops, "_c10d_functional"):  # FSDP2's reduce-scatter: never recomputed
        ops.add(torch.ops._c10d_functional.reduce_scatter_tensor.default)
    try:
        from torch._higher_order_ops.flex_attention import flex_attention
        ops.add(flex_attention)
    except ImportError:
        pass
    return frozenset(ops)


def _policy(saved: frozenset, _ctx, op, *_args, **_kwargs):
    from torch.utils.checkpoint import CheckpointPolicy

    return CheckpointPolicy.MUST_SAVE if op in saved else CheckpointPolicy.PREFER_RECOMPUTE


def selective_context_fn():
    """The `context_fn` of `torch.utils.checkpoint.checkpoint` that keeps matmul and attention outputs."""
    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    return create_selective_checkpoint_contexts(functools.partial(_policy, _saved_ops()))


def resolve(requested: str, model_config) -> tuple[str, str]:
    """The mode to run for the configured `requested` (`auto` or one of `MODES`) on a model with `model_config`
    (a transformers config), and why."""
    if requested != "auto":
        return requested, "as configured"
    hidden = getattr(model_config, "hidden_size", None)
    if hidden is not None and hidden >= AUTO_MIN_HIDDEN:
        return "selective", (f"auto: hidden size {hidden} >= {AUTO_MIN_HIDDEN}, so matmul and attention outputs are "
                             "kept and the element-wise rest recomputed (less activation memory, no measured cost)")
    return "off", (f"auto: hidden size {hidden} < {AUTO_MIN_HIDDEN}, so every activation is kept (small activations; "
                   "selective checkpointing's per-op cost would be a large part of the step)")


def enable(model, mode: str) -> None:
    """Checkpoint every decoder layer of `model` (a transformers `PreTrainedModel`) in `mode` (`MODES`)."""
    if mode not in MODES:
        raise ValueError(f"checkpointing mode {mode!r}: one of {', '.join(MODES)}")
    if mode == "off":
        return
    kwargs = {"use_reentrant": False}
    if mode == "selective":
        kwargs["context_fn"] = selective_context_fn
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5 renamed it; older have only the old name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
