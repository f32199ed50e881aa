"""Training: sequence log-probs now; the reference strategies and the loop will join them here."""

from prefgate.train.logps import completion_logps, pad_examples, sequence_logps

__all__ = ["completion_logps", "pad_examples", "sequence_logps"]
