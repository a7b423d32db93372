"""A training protocol's trainer fields as plain data, importable without JAX.

Configs and the evolution controller build protocols (``fitness.training_protocol``) without
importing JAX — DESIGN.md keeps JAX out of the controller process — so the defaults live here,
and ``lfe.training.train.default_config`` returns them.
"""

from __future__ import annotations

import ml_collections


def trainer_defaults() -> ml_collections.ConfigDict:
    """The ConvNet fitness protocol (§3.5, §3.7; authors' `fitness_function_convnet_standard`).

    The gate is this with `steps=800, stop_rules=((800, 0.37),)` and no validation data; the
    surrogate's early stop 2 is `stop_rules=((3000, 0.25),)`. Optional fields: `phases`
    (progressive training, `lfe.training.progressive`), `augment` (default "unit"), `init_from` (a
    pretrained-weights file for `lfe.training.models.pretrained.load_variables`).
    """
    return ml_collections.ConfigDict(
        {
            "steps": 8000,
            "batch_size": 128,
            "eval_every": 100,
            "eval_batch_size": 500,
            "stop_rules": (),  # (at_step, min_best_train_accuracy) pairs
            "optimizer": "adam",
            "learning_rate": 1e-3,
            "b1": 0.9,
            "b2": 0.999,
            "eps": 1e-7,
            "keras_eps": True,
            "momentum": 0.9,
            "weight_decay": 0.0,
            "schedule": "warmup_cosine",
            "warmup_steps": 800,
            "hold_steps": 0,
            "total_steps": 8000,
        }
    )
