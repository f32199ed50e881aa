"""Evaluation: suites, scorers, generation, grades, preference accuracy and KL, lm-eval import.

Light modules are re-exported here (importing them loads no model code); the model-facing ones are
imported from their modules: `prefgate.eval.runner.run_eval`, `prefgate.eval.reference`,
`prefgate.eval.judge`, `prefgate.eval.lm_eval.import_lm_eval`. Models and generation come from the
runtime: `prefgate.lm.load.load_model`, `prefgate.lm.generate.generate`.

>>> from prefgate.eval.runner import run_eval        # doctest: +SKIP
>>> report = run_eval("runs/dpo-1", "suite.jsonl")   # doctest: +SKIP
>>> report["categories"]["math"]["grade"]            # doctest: +SKIP
"""

from prefgate.eval.grades import DEFAULT_BANDS, GRADE_SCORES, GRADES, GradeBands, aggregate, grade, summarize
from prefgate.eval.scorers import REFUSAL_PHRASES, Score, score_choice, score_output
from prefgate.eval.suite import Suite, SuiteItem, load_suite

__all__ = [
    "DEFAULT_BANDS", "GRADES", "GRADE_SCORES", "REFUSAL_PHRASES", "GradeBands", "Score", "Suite", "SuiteItem",
    "aggregate", "grade", "load_suite", "score_choice", "score_output", "summarize",
]
