"""What training, evaluation and prediction share to run a model.

``devices`` (device and precision), ``distributed`` (torchrun's world),
``checkpoint`` (save, load and rebuild a model), ``rundir`` (the run
directory and the latest run), ``inference`` (batched probabilities over a
cached split) and ``caches`` (the cache a model reads).
"""
