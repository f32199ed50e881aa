"""prefgate: preference optimization (DPO and its family) that does not regress the model it trains."""

__version__ = "0.1.0"
