"""Evaluating a trained run on a split: ``evaluate.evaluate_run``.

It loads the model (``runtime.checkpoint``), opens the cache it reads
(``runtime.caches``), scores the split (``runtime.inference``) and turns the
probabilities into the report, tables and figures of ``metrics``.
``ensemble.evaluate_ensemble`` does that for each of several runs and
averages their image probabilities; ``members.top_runs`` picks the runs of
``--ensemble-top K``.
"""
