"""The batch size, learning rate and evaluation batch a run takes when they are not given.

On the CPU they are what they always were (batch 32, lr 1e-3, evaluation
batches of 256 images). On CUDA a batch of 32 leaves a large card mostly
idle: the default batch comes from a small table by model at 224 px,
halved for every doubling of the image area, and halved again until a
rough memory estimate fits half the card (``default_batch``). The learning
rate then follows the batch linearly (1e-3 x batch / 32), but only when
neither was given: a ``--batch-size`` given keeps lr 1e-3, an ``--lr`` given
is kept as it is. ``resolve_sizes`` writes the chosen numbers into the
config, so config.json, ``mura compare`` and ``--resume`` see them.
"""

from __future__ import annotations

import math

CPU_BATCH = 32
BASE_LR = 1e-3
CPU_EVAL_IMAGES = 256

#: Images per step at 224 px on a large CUDA card, by model (anything else: ``OTHER_BATCH``).
CUDA_BATCH = {"cnn": 256, "vgg16": 128, "densenet169": 128}
OTHER_BATCH = 64
#: Training memory per image at 224 px in MiB, measured with bf16 autocast at batch 64 on an
#: H200 (benchmarks/results/gpu-h200-2026-11-27.json: peak memory / 64), doubled for fp32's
#: margin below; a model not in the table is assumed to take ``OTHER_MIB``.
MIB_PER_IMAGE = {"cnn": 17, "vgg16": 77, "densenet169": 80}
OTHER_MIB = 100
#: The share of the card's memory the estimate may fill (the rest: the allocator, cuDNN workspaces).
MEMORY_SHARE = 0.5
EVAL_MAX = 1024


def _area_halvings(image_size: int) -> int:
    """How many times the image area doubles above 224 px (0 at or below it)."""
    return max(0, round(math.log2((image_size / 224) ** 2)))


def default_batch(device_type: str, total_memory: int | None, model: str, image_size: int, *, views: int = 1) -> int:
    """Images (studies, with ``views`` images each, for a study model) per training step by default.

    ``total_memory``: the card's memory in bytes (ignored on the CPU).
    """
    if device_type != "cuda":
        return CPU_BATCH
    batch = CUDA_BATCH.get(model, OTHER_BATCH) >> _area_halvings(image_size)
    per_image = 2 * MIB_PER_IMAGE.get(model, OTHER_MIB) * 2**20 * (image_size / 224) ** 2
    if total_memory:
        while batch > 1 and batch * per_image > MEMORY_SHARE * total_memory:
            batch //= 2
    return max(1, batch // views)


def default_eval_images(device_type: str, total_memory: int | None, model: str, image_size: int) -> int:
    """Images per evaluation batch by default: 256 on the CPU; on CUDA four training batches
    (no gradients or activations kept), from 256 up to 1024."""
    if device_type != "cuda":
        return CPU_EVAL_IMAGES
    return max(CPU_EVAL_IMAGES, min(EVAL_MAX, 4 * default_batch(device_type, total_memory, model, image_size)))


def default_lr(batch_size: int) -> float:
    """The learning rate of a batch the run chose itself: 1e-3 at 32, linear in the batch."""
    return BASE_LR if batch_size == CPU_BATCH else BASE_LR * batch_size / CPU_BATCH


#: The ``TrainConfig`` fields that ``resolve_sizes`` fills in when a run leaves them unset: a run
#: records the resolved values, and a config that leaves them unset accepts whatever they became.
RESOLVED_AT_START = ("batch_size", "lr", "eval_batch_images")


def resolve_sizes(config, device_type: str, total_memory: int | None):
    """Choose ``config``'s (a ``TrainConfig``'s) unset ``batch_size``, ``lr`` and ``eval_batch_images``,
    in place; returns it."""
    views = config.max_views if config.study_model else 1
    batch = config.batch_size
    if batch is None:
        batch = default_batch(device_type, total_memory, config.model, config.image_size, views=views)
    lr = config.lr
    if lr is None:
        lr = default_lr(batch) if config.batch_size is None else BASE_LR
    eval_images = config.eval_batch_images
    if eval_images is None:
        eval_images = default_eval_images(device_type, total_memory, config.model, config.image_size)
    config.batch_size, config.lr, config.eval_batch_images = batch, lr, eval_images
    return config


def device_memory(device) -> int | None:
    """The total memory of a CUDA ``device`` in bytes (None on the CPU)."""
    if device.type != "cuda":
        return None
    import torch

    return int(torch.cuda.get_device_properties(device).total_memory)
