"""The real HH-RLHF harmless-base test split (read in place from ../shared/data)."""

from __future__ import annotations

import pytest

from prefgate.cli import app
from prefgate.data import read_dataset
from tests.conftest import HH_TEST

pytestmark = pytest.mark.needs("hh_data")


def test_convert_gives_2312_explicit_prompt_records(tmp_path, runner):
    out = tmp_path / "hh.jsonl"
    result = runner.invoke(app, ["data", "convert", str(HH_TEST), str(out)])
    assert result.exit_code == 0, result.output
    ds = read_dataset(out)
    assert len(ds) == 2312 and ds.fingerprint == read_dataset(HH_TEST).fingerprint
    for rec in ds.records:
        assert rec.prompt.endswith("\n\nAssistant:")
        for completion in (rec.chosen, rec.rejected):
            # the answer to the last turn: never a fragment of the marker, never starting a new turn
            assert completion == "" or completion.startswith(" ")
            assert not completion.startswith(("\n\nHuman:", "\n\nAssistant:", "Assistant:", ":"))
        assert rec.prompt.startswith("\n\nHuman:")


def test_completions_reassemble_the_original_conversations():
    import gzip
    import json

    raw = [json.loads(line) for line in gzip.open(HH_TEST, "rt", encoding="utf-8")]
    ds = read_dataset(HH_TEST)
    assert len(raw) == len(ds) == 2312
    for row, rec in zip(raw, ds.records, strict=True):
        assert rec.prompt + rec.chosen == row["chosen"] and rec.prompt + rec.rejected == row["rejected"]
