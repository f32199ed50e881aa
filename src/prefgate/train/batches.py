"""From records to model rows: tokenise once, then lay out each batch as the loss needs it.

A batch is a set of rows (prompt + completion) sharing one forward pass; which rows is the loss's
`LossType.row_layout`:

- `PAIR` (most losses):     B chosen rows, then B rejected rows;
- `CHOSEN_ONLY` (sft):      B rows, the chosen completion (paired data) or the completion (unpaired data);
- `UNPAIRED_KL` (kto):      B completion rows, then B mismatched rows for the KL estimate: prompt i with the
                            completion of example (i + 1) mod N of the whole dataset, so the mismatch does not
                            depend on how examples are batched (and a reference cache can hold it).

Row `role` r of example i is row r * B + position. A `Batch` holds them padded (the concatenated forward)
and as token lists, from which the prefix-shared forward lays out one sequence per example (the rows of an
example share its prompt; `prefgate.lm.prefix`); both forwards return log-probs in this row order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch

from prefgate.data import PairTokenizer, PreferenceDataset, PreferencePair
from prefgate.errors import InputError
from prefgate.lm.logps import pad_examples
from prefgate.losses import LossType, RowLayout

Row = tuple[list[int], list[int]]  # (prompt_ids, completion_ids)


@dataclass
class TokenizedData:
    """Every example's rows, in dataset order: rows[i][role] for role in `roles`."""

    rows: list[list[Row]]
    labels: list[bool] | None  # KTO only
    truncated: int  # examples with any side cut by max_length
    asymmetric: int  # pairs cut on one side only

    @property
    def n_roles(self) -> int:
        return len(self.rows[0])

    def __len__(self) -> int:
        return len(self.rows)

    def n_tokens(self, i: int) -> int:
        return sum(len(p) + len(c) for p, c in self.rows[i])


@dataclass
class Batch:
    input_ids: torch.Tensor  # (R, T), R = n_roles * B, right-padded
    attention_mask: torch.Tensor  # (R, T)
    loss_mask: torch.Tensor  # (R, T) True on completion tokens
    lengths: torch.Tensor  # (R,) completion tokens per row, float32
    indices: list[int]  # dataset index of each of the B examples
    labels: torch.Tensor | None = None  # (B,) bool, KTO
    rows: list[list[Row]] = field(default_factory=list, repr=False)  # rows[i][role], for the prefix-shared layout
    pad_id: int = 0
    _layouts: dict = field(default_factory=dict, repr=False, compare=False)  # pack_tokens -> Layout (on CPU)

    @property
    def size(self) -> int:
        return len(self.indices)

    @property
    def n_tokens(self) -> int:
        """Tokens of the concatenated layout (padding excluded), whichever forward runs: throughput figures
        of runs with either forward compare."""
        return int(self.attention_mask.sum())

    def layout(self, pack_tokens: int | None):
        """The prefix-shared layout of this batch, built once and shared by the policy and reference passes."""
        if pack_tokens not in self._layouts:
            from prefgate.lm.prefix import build_layout

            self._layouts[pack_tokens] = build_layout(self.rows, pad_id=self.pad_id, pack_tokens=pack_tokens)
        return self._layouts[pack_tokens]

    def to(self, device) -> Batch:
        labels = None if self.labels is None else self.labels.to(device)
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.loss_mask.to(device),
                     self.lengths.to(device), self.indices, labels, self.rows, self.pad_id, self._layouts)


def tokenize_dataset(ds: PreferenceDataset, tokenizer, loss_type: LossType, *, max_length: int,
                     max_prompt_length: int | None, advance: Callable[[int], None] | None = None) -> TokenizedData:
    """Tokenise every record once into the rows `loss_type` trains on; `advance(1)` after each record (a
    progress bar's)."""
    tok = PairTokenizer(tokenizer, max_length=max_length, max_prompt_length=max_prompt_length)
    records = _ticking(ds.records, advance)
    layout = loss_type.row_layout
    if layout is RowLayout.CHOSEN_ONLY:
        return _paired_rows(records, tok, chosen_only=True) if ds.paired else _sft_rows(ds, records, tok)
    if layout is RowLayout.PAIR and ds.paired:
        return _paired_rows(records, tok, chosen_only=False)
    if layout is RowLayout.UNPAIRED_KL and not ds.paired:
        return _kto_rows(ds, records, tok)
    if ds.paired:
        raise InputError(f"loss '{loss_type.value}' trains on unpaired examples (prompt, completion, label), "
                         "but the data is paired", where=ds.source)
    raise InputError(f"loss '{loss_type.value}' needs paired data (prompt, chosen, rejected)", where=ds.source)


def _ticking(records: list, advance: Callable[[int], None] | None) -> Iterator:
    for rec in records:
        yield rec
        if advance is not None:
            advance(1)


def _paired_rows(records: Iterable, tok: PairTokenizer, *, chosen_only: bool) -> TokenizedData:
    rows, truncated, asymmetric = [], 0, 0
    for rec in records:
        assert isinstance(rec, PreferencePair)
        tp = tok.pair(rec)
        chosen = (tp.prompt_ids, tp.chosen_ids)
        rows.append([chosen] if chosen_only else [chosen, (tp.prompt_ids, tp.rejected_ids)])
        truncated += tp.chosen_truncated or tp.rejected_truncated
        asymmetric += tp.asymmetric_truncation
    return TokenizedData(rows, None, truncated, asymmetric)


def _sft_rows(ds: PreferenceDataset, records: Iterable, tok: PairTokenizer) -> TokenizedData:
    rows, truncated = [], 0
    for rec in records:
        if rec.label is False:  # an undesirable completion is not SFT material
            continue
        ex = tok.sft(rec.id, rec.prompt, rec.completion, template_kwargs=rec.template_kwargs)
        rows.append([(ex.prompt_ids, ex.completion_ids)])
        truncated += ex.completion_truncated
    if not rows:
        raise InputError("no desirable or unlabelled examples to train on", where=ds.source)
    return TokenizedData(rows, None, truncated, 0)


def _kto_rows(ds: PreferenceDataset, records: Iterable, tok: PairTokenizer) -> TokenizedData:
    if any(rec.label is None for rec in ds.records):
        raise InputError("loss 'kto' needs a label (true or false) on every example", where=ds.source)
    if len(ds.records) < 2:
        raise InputError("loss 'kto' needs at least 2 examples (its KL estimate pairs mismatched ones)",
                         where=ds.source)
    examples = [tok.example(rec) for rec in records]
    limit = tok.max_length
    rows = []
    for i, ex in enumerate(examples):
        other = examples[(i + 1) % len(examples)].completion_ids
        mismatched = other[: max(limit - len(ex.prompt_ids), 0)] if limit else other
        rows.append([(ex.prompt_ids, ex.completion_ids), (ex.prompt_ids, mismatched)])
    truncated = sum(ex.completion_truncated for ex in examples)
    return TokenizedData(rows, [bool(ex.label) for ex in examples], truncated, 0)


def collate(data: TokenizedData, indices: list[int], *, pad_id: int) -> Batch:
    """Rows role-major: all examples' role 0, then role 1 (chosen then rejected)."""
    rows = [data.rows[i][role] for role in range(data.n_roles) for i in indices]
    input_ids, attention_mask, loss_mask = pad_examples([p for p, _ in rows], [c for _, c in rows], pad_id=pad_id)
    lengths = loss_mask.sum(dim=1).to(torch.float32)
    labels = None if data.labels is None else torch.tensor([data.labels[i] for i in indices], dtype=torch.bool)
    return Batch(input_ids, attention_mask, loss_mask, lengths, list(indices), labels, [data.rows[i] for i in indices],
                 pad_id)
