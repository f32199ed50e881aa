"""The offline toy task and tiny model behind `prefgate demo` (docs/demo.md).

- `task`: four arithmetic categories with exactly checkable answers, split by prompt into train/dev/test.
- `model`: the character-level tokenizer and the tiny Llama config; `checkpoint/` is the shipped SFT run.
- `graders`: the v6 style-biased auto-grader and the simulated oracle rater.
- `pairsets`: the three preference sets, built with `prefgate.pairs`.
- `settings`: every setting of the demo; `stages`: thin calls into prefgate's stages; `story`: `run_demo`.
- `report`, `findings`, `page`, `templates/`: report.json and the self-contained report.html.
"""
