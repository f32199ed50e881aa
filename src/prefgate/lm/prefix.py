"""Prefix-shared, padding-free preference forward: the prompt of a pair is computed once, not twice.

The concatenated forward (`step.forward_logps`) runs 2B padded rows [prompt, chosen] and [prompt, rejected],
so every prompt is encoded twice and every row is padded to the longest. Here each example becomes one
*tree*: its prompt once, then each completion as a branch,

    tokens     p0 p1 p2 | c0 c1 c2 | r0 r1          (the last token of a branch is a target only: nothing
    positions   0  1  2 |  3  4  5 |  3  4           attends to it, so it is never fed to the model)
    branch      0  0  0 |  1  1  1 |  2  2

with an attention mask in which a token sees the earlier tokens of its own tree that are in the prompt or in
its own branch (so r0 sees p0..p2 and itself, never c0..c2), and position ids that restart after the prompt,
so every branch token has the position it has in the concatenated layout. Several trees can be packed into
one row (`pack_tokens`); the mask is then block-diagonal over trees. The work per pair falls from
2P + |yw| + |yl| + padding to P + |yw| + |yl| - 2.

The hidden states come from the model's own forward (so DDP, PEFT and autocast wrappers all see a normal
call), with `logits_to_keep` selecting no position at all; the LM head then runs only on the positions that
predict a completion token, in chunks (`prefgate.lm.chunked`), so the full-vocabulary logits of the batch
never exist. The result is the same as the concatenated forward's within float32 rounding
(tests/lm/test_prefix.py checks log-probs and gradients to 1e-5 for Llama, Qwen2 and GPT-2).

Attention: a 4D mask of shape (rows, 1, L, L), boolean for `sdpa`, additive float for `eager`, a
`BlockMask` for `flex_attention` (on GPU; block-sparse, so packing long rows costs no wasted attention).
transformers passes a 4D mask to the attention unchanged (`masking_utils._preprocess_mask_arguments`).
Models that cannot take such a mask (flash-attention kernels, sliding-window or multimodal models,
encoder-decoders, ...) are detected by `supports_prefix_sharing`, which also runs a small numerical probe
against the concatenated forward once per model; `resolve_forward` falls back with a logged reason.

Shapes: B = examples, R = layout rows, L = row width, N = scored completion tokens, H = hidden, V = vocab.
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prefgate.lm.chunked import chunked_target_logps
from prefgate.lm.load import eval_mode
from prefgate.lm.logps import completion_logps, padded_token_logps

__all__ = ["FORWARD_MODES", "Layout", "build_layout", "layout_logps", "layout_token_logps", "pair_logps",
           "prefix_shared_logps", "resolve_forward", "supports_prefix_sharing", "token_logps"]

Row = tuple[list[int], list[int]]  # (prompt_ids, completion_ids)
FORWARD_MODES = ("auto", "concatenated", "prefix_shared")
_MASKABLE = ("sdpa", "eager", "flex_attention")
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier",
                     "lm_head_multiplier")
log = logging.getLogger(__name__)


# -- layout -------------------------------------------------------------------------------------------------


@dataclass
class _Tree:
    """One prompt and the completions that share it; `slots` are the output indices of the completions."""

    prompt: list[int]
    completions: list[list[int]]
    slots: list[int]

    @property
    def length(self) -> int:
        return len(self.prompt) + sum(max(len(c) - 1, 0) for c in self.completions)


@dataclass
class Layout:
    """Model inputs for a batch of trees, and where each scored token's predicting hidden state sits."""

    input_ids: torch.Tensor  # (R, L) int64, padded with pad_id
    position_ids: torch.Tensor  # (R, L) int64, restarting after the prompt in every branch
    segment: torch.Tensor  # (R, L) int64, which tree of the row a token belongs to; -1 on padding
    branch: torch.Tensor  # (R, L) int64, 0 on the prompt, k on the k-th completion; -1 on padding
    pred_row: torch.Tensor  # (N,) int64, row of the hidden state that predicts each scored token
    pred_col: torch.Tensor  # (N,) int64, its column
    targets: torch.Tensor  # (N,) int64, the scored completion tokens
    owner: torch.Tensor  # (N,) int64, the output slot (role-major row of `collate`) each token adds to
    n_outputs: int

    @property
    def n_tokens(self) -> int:
        """Tokens the model actually runs on (padding excluded)."""
        return int((self.segment >= 0).sum())

    def to(self, device) -> Layout:
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.__dict__.items()}
        return Layout(**moved)


def _trees(rows: Sequence[Sequence[Row]]) -> list[_Tree]:
    """One tree per example (its roles share the prompt), or one per role if an example's prompts differ."""
    b = len(rows)
    if b == 0 or len({len(r) for r in rows}) != 1:
        raise ValueError(f"expected a non-empty batch with the same number of roles per example, got {b} examples "
                         f"with {sorted({len(r) for r in rows})} roles")
    trees = []
    for i, roles in enumerate(rows):
        slots = [role * b + i for role in range(len(roles))]  # role-major, as `collate` lays out rows
        if all(list(p) == list(roles[0][0]) for p, _ in roles):
            trees.append(_Tree(list(roles[0][0]), [list(c) for _, c in roles], slots))
        else:
            trees.extend(_Tree(list(p), [list(c)], [s]) for (p, c), s in zip(roles, slots, strict=True))
    return trees


def _pack(lengths: list[int], pack_tokens: int | None) -> list[list[int]]:
    """Tree indices per row: one tree a row, or first-fit decreasing into rows of max(pack_tokens, longest)."""
    if pack_tokens is None:
        return [[i] for i in range(len(lengths))]
    capacity = max(pack_tokens, *lengths)
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: (-lengths[j], j)):
        k = next((k for k, r in enumerate(room) if r >= lengths[i]), None)
        if k is None:
            bins.append([])
            room.append(capacity)
            k = len(bins) - 1
        bins[k].append(i)
        room[k] -= lengths[i]
    return bins


class _RowBuilder:
    """Appends trees to one row, recording tokens, positions, segments, branches and the scoring plan."""

    def __init__(self, row: int):
        self.row = row
        self.ids: list[int] = []
        self.pos: list[int] = []
        self.seg: list[int] = []
        self.br: list[int] = []
        self.plan: list[tuple[int, int, int, int]] = []  # (row, col, target, slot)

    def add(self, tree: _Tree, segment: int) -> None:
        p = len(tree.prompt)
        last_prompt = len(self.ids) + p - 1  # the hidden state that predicts every branch's first token
        self._extend(tree.prompt, range(p), segment, 0)
        for k, (completion, slot) in enumerate(zip(tree.completions, tree.slots, strict=True), start=1):
            start = len(self.ids)
            self._extend(completion[:-1], range(p, p + len(completion) - 1), segment, k)
            for j, token in enumerate(completion):
                if j == 0 and p == 0:  # position 0 is never scored (as in `sequence_logps`)
                    continue
                self.plan.append((self.row, last_prompt if j == 0 else start + j - 1, token, slot))

    def _extend(self, tokens: list[int], positions: range, segment: int, branch: int) -> None:
        self.ids.extend(tokens)
        self.pos.extend(positions)
        self.seg.extend([segment] * len(tokens))
        self.br.extend([branch] * len(tokens))


def build_layout(rows: Sequence[Sequence[Row]], *, pad_id: int, pack_tokens: int | None = None) -> Layout:
    """Lay out `rows` (rows[i][role] = (prompt_ids, completion_ids), as in `TokenizedData.rows`) as trees.

    The outputs are role-major, like `collate`: slot role * B + i holds example i's role.
    `pack_tokens`: None puts one tree per layout row; an int packs trees into rows of at most
    max(pack_tokens, longest tree) tokens (first-fit decreasing), with a block-diagonal mask.
    """
    trees = _trees(rows)
    builders = []
    for r, members in enumerate(_pack([t.length for t in trees], pack_tokens)):
        builder = _RowBuilder(r)
        for segment, t in enumerate(members):
            builder.add(trees[t], segment)
        builders.append(builder)
    width = max(1, max(len(b.ids) for b in builders))

    def padded(attr: str, fill: int) -> torch.Tensor:
        return torch.tensor([getattr(b, attr) + [fill] * (width - len(b.ids)) for b in builders], dtype=torch.long)

    plan = [step for b in builders for step in b.plan]
    cols = torch.tensor(plan, dtype=torch.long).reshape(-1, 4).T  # (4, N)
    return Layout(padded("ids", pad_id), padded("pos", 0), padded("seg", -1), padded("br", -1),
                  cols[0], cols[1], cols[2], cols[3], n_outputs=sum(len(r) for r in rows))


def _allowed(layout: Layout) -> torch.Tensor:
    """(R, L, L) bool: query q may attend to key k (same tree, k <= q, k in the prompt or in q's branch).
    Padding attends to padding only, so no query row is fully masked (no NaN)."""
    seg, br = layout.segment, layout.branch
    width = seg.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=seg.device).tril()
    same_tree = seg[:, :, None] == seg[:, None, :]
    visible = (br[:, None, :] == 0) | (br[:, :, None] == br[:, None, :])
    return same_tree & visible & causal


def _flex_mask(layout: Layout):
    from torch.nn.attention.flex_attention import create_block_mask

    seg, br = layout.segment, layout.branch

    def mask_mod(b, h, q, k):  # noqa: ARG001 - flex attention's mask_mod signature; the mask is the same per head
        return (seg[b, q] == seg[b, k]) & (k <= q) & ((br[b, k] == 0) | (br[b, k] == br[b, q]))

    rows, width = seg.shape
    return create_block_mask(mask_mod, rows, None, width, width, device=seg.device)


def attention_mask(layout: Layout, attn_implementation: str, dtype: torch.dtype):
    """The 4D mask the model's attention takes: bool (sdpa), additive float (eager) or a BlockMask (flex)."""
    if attn_implementation == "flex_attention":
        return _flex_mask(layout)
    allowed = _allowed(layout)[:, None]  # (R, 1, L, L)
    if attn_implementation == "sdpa":
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed,
                                                                                       torch.finfo(dtype).min)


# -- forward ------------------------------------------------------------------------------------------------


def _unwrap(model):
    """The transformers model inside DDP, PEFT or torch.compile wrappers."""
    for _ in range(8):
        if hasattr(model, "get_base_model"):  # peft.PeftModel: the transformers model, adapters injected
            model = model.get_base_model()
        elif isinstance(getattr(model, "module", None), torch.nn.Module):  # DistributedDataParallel
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model
    return model


def _plain_head(hf) -> bool:
    """True when logits are exactly `lm_head(hidden)`: a plain Linear and no scaling or soft-capping, whose weight
    can be read outside the head's forward (not a DeepSpeed ZeRO-3 partition, `ds_tensor`, which is gathered only
    while the head's own forward runs)."""
    text = hf.config.get_text_config()
    if any(getattr(text, name, None) not in (None, 1, 1.0) for name in _LOGIT_TRANSFORMS):
        return False
    head = hf.get_output_embeddings()
    return type(head) is torch.nn.Linear and not hasattr(head.weight, "ds_tensor")


def _forward(model, hf, layout: Layout, logits_to_keep: torch.Tensor):
    """Run `model` (wrapper and all) on the layout; returns (its output, the backbone's last hidden state)."""
    impl = hf.config._attn_implementation
    mask = attention_mask(layout, impl, hf.get_input_embeddings().weight.dtype)
    captured = []
    hook = hf.base_model.register_forward_hook(lambda _module, _args, out: captured.append(out[0]))
    try:
        out = model(input_ids=layout.input_ids, attention_mask=mask, position_ids=layout.position_ids,
                    use_cache=False, logits_to_keep=logits_to_keep)
    finally:
        hook.remove()
    return out, captured[-1]


def layout_token_logps(model, layout: Layout) -> torch.Tensor:
    """log p(target) of every scored token, float32 (N,), in layout order (`layout.owner` says whose);
    differentiable. With a plain LM head the full-vocabulary logits never exist: the head runs on the
    predicting positions only, in chunks of about 128 MB of logits (`chunked_target_logps`)."""
    hf = _unwrap(model)
    layout = layout.to(hf.get_input_embeddings().weight.device)
    keep = torch.zeros(layout.input_ids.shape, dtype=torch.bool, device=layout.input_ids.device)
    if _plain_head(hf):
        _, hidden = _forward(model, hf, layout, keep)  # (R, L, H); the model's own head sees no position
        head = hf.get_output_embeddings()
        return chunked_target_logps(hidden[layout.pred_row, layout.pred_col], head.weight, head.bias,
                                    layout.targets)
    # the model's own head (scaling, soft-capping, adapters) on the predicting positions only: (N, V) logits
    keep[layout.pred_row, layout.pred_col] = True
    logits = _forward(model, hf, layout, keep)[0].logits  # (n_kept, V), row-major order
    index = (keep.flatten().cumsum(0) - 1)[layout.pred_row * keep.shape[1] + layout.pred_col]
    return torch.log_softmax(logits.float(), dim=-1)[index, layout.targets]


def layout_logps(model, layout: Layout) -> torch.Tensor:
    """Summed completion log-prob of every output slot, float32 (n_outputs,); differentiable."""
    token_logps = layout_token_logps(model, layout)
    # Sum each completion's token log-probs in float64: index_add adds one token at a time, and in float32 that
    # drifts by ~1e-4 over a few hundred tokens of ~-10 each (a reduction like `.sum()` adds pairwise).
    wide = torch.float32 if token_logps.device.type == "mps" else torch.float64  # MPS has no float64
    out = torch.zeros(layout.n_outputs, dtype=wide, device=token_logps.device)
    return out.index_add(0, layout.owner.to(token_logps.device), token_logps.to(wide)).float()


def prefix_shared_logps(model, rows: Sequence[Sequence[Row]], *, pad_id: int,
                        pack_tokens: int | None = None) -> torch.Tensor:
    """Summed completion log-probs of `rows` with each prompt computed once: float32 (n_roles * B,), role-major
    (all examples' chosen, then all rejected), the same contract and order as `step.forward_logps` on
    `collate(data, indices)`; differentiable. A completion with no scored token gives 0.

    Call `supports_prefix_sharing(model)` (or `resolve_forward`) once before relying on it.
    """
    return layout_logps(model, build_layout(rows, pad_id=pad_id, pack_tokens=pack_tokens))


# -- support detection --------------------------------------------------------------------------------------


def _sliding_window(config) -> bool:
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        return any(t != "full_attention" for t in layer_types)
    return getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True)


def _static_reason(hf) -> str | None:
    """Why the model cannot take the prefix-shared layout, judged from its class and config; None if it can."""
    config = getattr(hf, "config", None)
    if config is None or not hasattr(hf, "get_output_embeddings"):
        return f"{type(hf).__name__} is not a transformers model"
    impl = getattr(config, "_attn_implementation", None)
    if getattr(config, "is_encoder_decoder", False) or config.get_text_config() is not config:
        return f"{type(hf).__name__} is an encoder-decoder or multimodal model"
    if impl not in _MASKABLE:
        return f"attn_implementation '{impl}' cannot take a custom 4D attention mask (sdpa, eager and " \
               "flex_attention can)"
    if impl == "flex_attention" and hf.get_input_embeddings().weight.device.type == "cpu":
        return "flex_attention has no backward on CPU"
    if _sliding_window(config):
        return "sliding-window attention layers would ignore a custom 4D mask's window"
    params = inspect.signature(type(hf).forward).parameters
    if "logits_to_keep" not in params or "position_ids" not in params:
        return f"{type(hf).__name__}.forward takes no logits_to_keep or position_ids"
    if hf.base_model is hf or hf.get_output_embeddings() is None:
        return f"{type(hf).__name__} has no separate backbone and LM head"
    return None


def _probe_rows(vocab_size: int) -> list[list[Row]]:
    """Three pairs of varied lengths (one chosen of a single token) from a fixed generator."""
    gen = torch.Generator().manual_seed(0)

    def ids(n: int) -> list[int]:
        return torch.randint(0, vocab_size, (n,), generator=gen).tolist()

    return [[(p, ids(c)), (p, ids(r))] for p, c, r in ((ids(5), 4, 3), (ids(3), 1, 6), (ids(7), 5, 5))]


# How close the probe's prefix-shared and concatenated sums must be. Each probe sum adds 1-6 token log-probs
# of about -log(vocab) each. In float32 the two layouts differ by reduction order only (~1e-5 a token).
# With half-precision weights (bf16: 8 mantissa bits, relative rounding ~4e-3) the two layouts round
# differently in every matmul, which reaches ~0.1 per token on a random-initialised model, so up to ~0.5
# on a 6-token sum; a mask or position ids the model ignores moves a sum by whole nats (a token then sees
# the other branch or the wrong position), which is what the probe exists to catch.
PROBE_TOLERANCE_FP32 = {"rtol": 1e-4, "atol": 1e-3}
PROBE_TOLERANCE_HALF = {"rtol": 2e-2, "atol": 0.5}


@torch.no_grad()
def _probe(hf) -> tuple[bool, str]:
    """Prefix-shared (packed) against concatenated log-probs on a few random pairs, in eval mode."""
    rows = _probe_rows(hf.config.get_text_config().vocab_size)
    flat = [rows[i][role] for role in range(2) for i in range(len(rows))]  # role-major, as the outputs are
    with eval_mode(hf):
        ours = prefix_shared_logps(hf, rows, pad_id=0, pack_tokens=64).cpu()
        ref = completion_logps(hf, [p for p, _ in flat], [c for _, c in flat], pad_id=0, batch_size=len(flat))[0]
    full = hf.get_input_embeddings().weight.dtype == torch.float32
    if torch.allclose(ours, ref, **(PROBE_TOLERANCE_FP32 if full else PROBE_TOLERANCE_HALF)):
        head = "chunked LM head" if _plain_head(hf) else "the model's own LM head on completion positions"
        return True, f"prefix sharing with {hf.config._attn_implementation} attention and {head}"
    gap = float((ours - ref).abs().max())
    return False, f"the prefix-shared probe differs from the concatenated forward by {gap:.3g} (custom masks or " \
                  "position ids are not honoured by this model)"


_SUPPORT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def supports_prefix_sharing(model) -> tuple[bool, str]:
    """(True, how) when `model` takes the prefix-shared layout exactly; (False, why not) otherwise.

    Static checks on the class and config first, then, once per model and attention implementation, a
    numerical probe against the concatenated forward (a few tiny sequences, no gradient, eval mode)."""
    hf = _unwrap(model)
    reason = _static_reason(hf)
    if reason is not None:
        return False, reason
    impl = hf.config._attn_implementation
    cached = _SUPPORT.get(hf)
    if cached is None or cached[0] != impl:
        try:
            result = _probe(hf)
        except Exception as err:  # any failure of the custom-mask forward means: use the concatenated one
            first_line = (str(err).splitlines() or [""])[0]
            result = False, f"the prefix-shared probe failed: {type(err).__name__}: {first_line}"
        cached = (impl, result)
        _SUPPORT[hf] = cached
    return cached[1]


def resolve_forward(model, mode: str) -> tuple[str, str]:
    """`forward: auto | concatenated | prefix_shared` -> ("prefix_shared" | "concatenated", reason).

    `auto` picks prefix sharing where `supports_prefix_sharing` says yes and logs why when it does not;
    `prefix_shared` on a model that cannot take it raises `InputError`."""
    from prefgate.errors import InputError

    if mode not in FORWARD_MODES:
        raise InputError(f"expected one of {', '.join(FORWARD_MODES)}, got {mode!r}", field="forward")
    if mode == "concatenated":
        return "concatenated", "concatenated (configured)"
    ok, reason = supports_prefix_sharing(model)
    if ok:
        return "prefix_shared", reason
    if mode == "prefix_shared":
        raise InputError(f"this model cannot use the prefix-shared forward: {reason}", field="forward")
    log.warning("forward: auto falls back to the concatenated forward: %s", reason)
    return "concatenated", f"concatenated forward (prefix sharing unavailable: {reason})"


@torch.no_grad()
def pair_logps(model, prompts: Sequence[list[int]], chosen: Sequence[list[int]], rejected: Sequence[list[int]],
               *, pad_id: int = 0, batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed chosen and rejected log-probs of every pair, float32 (N,) each on the CPU, with each prompt computed
    once where the model supports the prefix-shared forward (the trainer's `forward: auto`), else two padded
    rows per pair; the two agree within float32 rounding."""
    if not supports_prefix_sharing(model)[0]:
        return (completion_logps(model, prompts, chosen, pad_id=pad_id, batch_size=batch_size)[0],
                completion_logps(model, prompts, rejected, pad_id=pad_id, batch_size=batch_size)[0])
    out_chosen, out_rejected = [], []
    for start in range(0, len(prompts), batch_size):
        end = start + batch_size
        rows = [[(p, c), (p, r)] for p, c, r in zip(prompts[start:end], chosen[start:end], rejected[start:end],
                                                       strict=True)]
        logps = prefix_shared_logps(model, rows, pad_id=pad_id).cpu()
        out_chosen.append(logps[:len(rows)])
        out_rejected.append(logps[len(rows):])
    if not out_chosen:
        return torch.zeros(0), torch.zeros(0)
    return torch.cat(out_chosen), torch.cat(out_rejected)


@torch.no_grad()
def token_logps(model, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], *,
                pad_id: int = 0, batch_size: int = 8) -> list[list[float]]:
    """Each completion token's log-probability under `model`: the contract of `lm.logps.token_logps` (one list
    of len(completion_ids[i]) floats per example, in the input's order; [] for an empty completion; no
    gradient; the caller chooses the mode), without full-vocabulary logits where the model allows.

    Where `supports_prefix_sharing(model)` and the head is a plain Linear, `batch_size` examples at a time go
    through the layout and the LM head runs in chunks on completion positions only: at most about 128 MB of
    logits at once instead of (batch_size, T, V). Otherwise the padded full-logits forward
    (`lm.logps.padded_token_logps`); the two agree within float32 rounding.
    """
    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"got {len(prompt_ids)} prompts and {len(completion_ids)} completions")
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("every prompt needs at least one token (e.g. BOS)")
    if not prompt_ids:
        return []
    if not (supports_prefix_sharing(model)[0] and _plain_head(_unwrap(model))):
        return padded_token_logps(model, prompt_ids, completion_ids, pad_id=pad_id, batch_size=batch_size)
    out: list[list[float]] = []
    for start in range(0, len(prompt_ids), batch_size):
        rows = [[(list(p), list(c))] for p, c in zip(prompt_ids[start:start + batch_size],
                                                     completion_ids[start:start + batch_size], strict=True)]
        out.extend(_example_token_logps(model, rows, pad_id=pad_id))
    return out


def _example_token_logps(model, rows: list[list[Row]], *, pad_id: int) -> list[list[float]]:
    """Per-token log-probs of one-role `rows` (one tree of one branch each, one tree a layout row), one list per
    example. `build_layout` plans tokens example by example, in token order; the owner of each is its example's
    index, so a stable sort by owner recovers every completion's tokens in order whatever the row order."""
    layout = build_layout(rows, pad_id=pad_id)
    logps = layout_token_logps(model, layout).cpu()  # (N,) float32
    order = torch.argsort(layout.owner, stable=True)
    counts = torch.bincount(layout.owner, minlength=len(rows)).tolist()  # == len(completion): prompts non-empty
    return [part.tolist() for part in torch.split(logps[order], counts)]
