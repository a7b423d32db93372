"""A fast, deterministic stand-in for real training, for tests of the evolution machinery.

Same signature and output as ``lfe.worker.evaluate_candidate``; the fitness is a function of
the
candidate's genome (so a resumed run reproduces it exactly) and about one in five is gated.
"""

import hashlib
import json
import time


def evaluate(spec: dict, fitness_config: dict, seed: int, stage: str = "surrogate") -> dict:
    del fitness_config
    digest = hashlib.sha256(json.dumps(spec["genome"], sort_keys=True).encode()).digest()
    u = int.from_bytes(digest[:4], "little") / 2**32
    time.sleep(0.02 + 0.03 * digest[4] / 255)
    gated = stage == "surrogate" and digest[5] % 5 == 0
    fit = None if gated else round(0.3 + 0.3 * u + 0.001 * (seed % 7), 6)
    return {"fitness": fit, "status": "gated" if gated else "ok", "steps": 10,
            "wall_time_s": 0.0, "curve": [], "gate_train_accuracy": None,
            "best_train_accuracy": 0.0, "best_val_accuracy": fit or 0.0, "message": ""}
