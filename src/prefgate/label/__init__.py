"""The blind labelling tool: a seeded stratified sample, A/B shown in random order, every answer fsynced.

>>> from prefgate.label import label_sample, LabelSession, LabelStore    # doctest: +SKIP
>>> sample = label_sample(read_dataset("pairs.jsonl").records, 0.1, seed=0)  # doctest: +SKIP

`prefgate.label.tui.run_tui` is the terminal front end; `prefgate.label.agreement` measures Cohen's and
Fleiss' kappa and agreement with the auto-labels. docs/label.md describes the sample, the keys and the file.
"""

from prefgate.label.agreement import agreement_report, cohen_kappa, fleiss_kappa
from prefgate.label.sample import a_side, allocate, label_sample, preferred_for
from prefgate.label.session import LabelSession, render
from prefgate.label.store import PREFERRED, Label, LabelStore, latest, read_labels_file

__all__ = [
    "PREFERRED", "Label", "LabelSession", "LabelStore", "a_side", "agreement_report", "allocate", "cohen_kappa",
    "fleiss_kappa", "label_sample", "latest", "preferred_for", "read_labels_file", "render",
]
