"""Evaluating a trained run on a split: ``evaluate.evaluate_run``.

It loads the model (``runtime.checkpoint``), opens the cache it reads
(``runtime.caches``), scores the split (``runtime.inference``) and turns the
probabilities into the report, tables and figures of ``metrics``.
"""
