"""The model runtime: the one place every stage loads and runs a causal LM.

- `load`: `load_causal_lm` (from_pretrained with a one-line error), `load_model` (a model folder, hub id,
  adapter or run directory, with its tokenizer, in eval mode), `merge_adapter`, `eval_mode`, `pad_token_id`,
  `check_same_vocab`.
- `logps`: float32 sequence and per-token log-probs of completions (`sequence_logps`, `completion_logps`,
  `token_logps`), padding (`pad_examples`).
- `prefix`: the prefix-shared, packable forward (each prompt once), its support probe and `pair_logps`.
- `chunked`: the LM head and log-softmax over selected positions, in chunks, with its own backward.
- `generate`: batched generation (greedy for evals, sampled for sample-and-grade).
- `checkpointing`: activation checkpointing of the decoder layers, `selective` (matmul outputs kept) or `full`, and
  the `auto` rule.

Imports run one way: `prefgate.data` below, the stages (`train`, `eval`, `diagnose`, `sweep`, `pairs`,
...) above; nothing here imports a stage. The submodules are imported where used (this package loads no
torch by itself).
"""
