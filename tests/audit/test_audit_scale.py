"""The audit at scale (issue 17): the fast paths give exactly what the plain definitions give, and the
benchmark runs and prints its per-check table.

The per-check values on planted defects are asserted in the other tests of this folder; these check the
pieces that were rewritten for 1M pairs against the straightforward code they replace.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from prefgate.audit import TEXT_ONLY_CHECKS
from prefgate.audit.duplicates import band_groups, lsh_bands, shingles, signatures
from prefgate.audit.policy import AuditPolicy
from prefgate.audit.view import RecordView, key_present, repeats_earlier, style_norm, ws_norm

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "audit.py"
# Whitespace of every kind str.split knows (\x1c-\x1f, NEL, NBSP, line and paragraph separators, ideographic
# space), case traps (Kelvin sign, dotted I, sharp s), markdown, digits, non-ASCII letters.
ALPHABET = list("ab Z9_.-*#`>[]()!\n\t\r") + ["  ", "1. ", "\n2) ", "](", "\x1c", "\x1f", "\x85", "\xa0",
                                               "\u2028", "\u2029", "\u3000", "\u212a", "\u0130", "ß", "é", "ж"]


def random_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 30))) for _ in range(n)]


_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_ORDERED_MARKER = re.compile(r"(?m)^[ \t]*\d{1,3}[.)][ \t]+")
_NOT_ALNUM = re.compile(r"[\W_]+")


def plain_style_norm(text: str) -> str:
    """The definition in docs/audit.md, as regexes only (the code before its ASCII fast path)."""
    return _NOT_ALNUM.sub("", _ORDERED_MARKER.sub("", _LINK.sub(r"\1", text)).lower())


def test_ws_norm_equals_split_and_join():
    texts = random_texts(5000) + ["", " ", "a", "a b", " a", "a ", "a  b", "a\u3000b", "a\x1cb"]
    assert [ws_norm(t) for t in texts] == [" ".join(t.split()) for t in texts]


def test_style_norm_equals_the_regex_definition():
    texts = random_texts(5000, seed=1) + ["See [the docs](http://x.y/z) now", "1. One\n2) Two", "\u212aelvin"]
    assert [style_norm(t) for t in texts] == [plain_style_norm(t) for t in texts]


def test_row_matching_helpers():
    keys = np.array([[1, 2], [3, 4], [1, 2], [5, 6], [3, 4]], dtype=np.uint64)
    assert repeats_earlier(keys).tolist() == [False, False, True, False, True]
    queries = np.array([[5, 6], [6, 5], [1, 2]], dtype=np.uint64)
    assert key_present(queries, keys).tolist() == [True, False, True]


def near_variants(n: int, seed: int = 0) -> list[frozenset]:
    """Shingle sets of prompts in families of near variants (one or two words changed), so LSH has work."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(300)]
    prompts = []
    for _ in range(n // 4):
        base = [rng.choice(words) for _ in range(rng.randint(5, 30))]
        for _ in range(4):
            variant = list(base)
            for _ in range(rng.randint(0, 2)):
                variant[rng.randrange(len(variant))] = rng.choice(words)
            prompts.append(" ".join(variant))
    return [shingles(p, 2) for p in prompts]


@pytest.mark.parametrize("jaccard_threshold", [0.8, 0.5])
def test_band_groups_propose_exactly_what_minhashlsh_queries_return(jaccard_threshold):
    from datasketch import MinHash, MinHashLSH

    params = AuditPolicy().minhash
    sets = near_variants(800)
    sigs = signatures(iter(sets), len(sets), params)
    minhashes = MinHash.bulk(sets, num_perm=params.num_perm, hashfunc=zlib.crc32)
    assert all(np.array_equal(row, m.hashvalues) for row, m in zip(sigs, minhashes, strict=True))

    lsh = MinHashLSH(threshold=jaccard_threshold - 0.1, num_perm=params.num_perm)
    for i, m in enumerate(minhashes):
        lsh.insert(i, m)
    expected = {i: set(lsh.query(m)) - {i} for i, m in enumerate(minhashes)}
    proposed: dict[int, set[int]] = {i: set() for i in range(len(sets))}
    for group in band_groups(sigs, lsh_bands(jaccard_threshold, params)):
        for i in group:
            proposed[i].update(j for j in group if j != i)
    assert proposed == expected
    assert sum(map(len, expected.values())) > len(sets)  # the families are found: the test has teeth


def test_view_keeps_no_copy_of_the_texts(pairs):
    view = RecordView(pairs)
    assert all(view.chosen[i] is p.chosen for i, p in enumerate(pairs))
    assert [t is p.rejected for t, p in zip(view.rejected, pairs, strict=True)] == [True] * len(pairs)
    assert view.chosen_digest.shape == (len(pairs), 2) and view.chosen_len.dtype == np.int64


@pytest.mark.slow
def test_benchmark_prints_the_per_check_table():
    proc = subprocess.run([sys.executable, str(BENCHMARK), "--pairs", "20000"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.startswith("  ")}
    assert rows["check"] == ["check", "seconds", "CPU", "s", "RSS", "GB", "peak", "status", "value"]
    for check_id in TEXT_ONLY_CHECKS:
        seconds, cpu, rss, peak = (float(x) for x in rows[check_id][1:5])
        assert seconds >= 0 and cpu >= 0 and 0 < rss <= peak + 0.01
    assert rows["duplicates"][5] == "pass" and rows["leakage"][5] == "fail"  # 20 eval prompts leaked
    assert re.search(r"^audit wall time: [\d.]+ s, CPU [\d.]+ s", proc.stdout, re.M)
    assert re.search(r"^peak RSS: [\d.]+ GB", proc.stdout, re.M)
