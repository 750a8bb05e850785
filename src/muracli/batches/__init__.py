"""The torch input pipeline: batches of the cache's pixels for a model.

``datasets`` (image and study datasets, the loaders), ``sampler`` (the
epoch's order, shared by every rank), ``loader`` (loader threads),
``augment`` (batched augmentation and normalisation, on the GPU when
training there) and ``warp`` (the same augmentation as one compiled CPU
pass per image). Everything here imports torch.
"""
