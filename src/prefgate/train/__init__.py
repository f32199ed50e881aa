"""Training: row layouts per loss (batches), the loss step, reference strategies, checkpoints, monitors and
the accelerate loop (`prefgate.train.loop.train`). Models and log-probs come from the runtime, `prefgate.lm`."""
