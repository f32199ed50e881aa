"""The preference-data layer: every stage reads data through here.

>>> from prefgate.data import read_dataset
>>> ds = read_dataset("pairs.jsonl")              # doctest: +SKIP
>>> ds.fingerprint, len(ds), ds.records[0].chosen  # doctest: +SKIP
"""

from prefgate.data.dataset import PreferenceDataset, RejectedRow, fingerprint, read_dataset
from prefgate.data.records import (
    PreferencePair,
    Record,
    Text,
    UnpairedExample,
    canonical_json,
    content_id,
    parse_row,
    prompt_key,
)
from prefgate.data.split import split_by_prompt
from prefgate.data.tokenize import PairTokenizer, TokenizedExample, TokenizedPair, load_tokenizer
from prefgate.data.writers import write_records

__all__ = [
    "PairTokenizer", "PreferenceDataset", "PreferencePair", "Record", "RejectedRow", "Text", "TokenizedExample",
    "TokenizedPair", "UnpairedExample", "canonical_json", "content_id", "fingerprint", "load_tokenizer",
    "parse_row", "prompt_key", "read_dataset", "split_by_prompt", "write_records",
]
