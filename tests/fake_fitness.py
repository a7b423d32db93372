"""A fast, deterministic stand-in for real training, for tests of the evolution machinery.

Same signature and output as ``lfe.worker.evaluate_candidate``; the fitness is a function of
the
candidate's genome (so a resumed run reproduces it exactly) and about one in five is gated.
"""

import hashlib
import json
import time


def evaluate(spec: dict, fitness_config: dict, seed: int, stage: str = "surrogate",
             checkpoint_dir: str = "", rung=None) -> dict:
    """With ``rung = [index, until]`` (a child trained in rungs): ``paused`` at ``until`` with
    a best training accuracy that ranks the candidates differently at each rung, or the final
    record (``until`` 0); only the first task (index 0) can be gated."""
    del fitness_config, checkpoint_dir
    digest = hashlib.sha256(json.dumps(spec["genome"], sort_keys=True).encode()).digest()
    u = int.from_bytes(digest[:4], "little") / 2**32
    time.sleep(0.02 + 0.03 * digest[4] / 255)
    index, until = rung if rung is not None else (0, 0)
    gated = stage == "surrogate" and digest[5] % 5 == 0 and index == 0
    fit = None if gated else round(0.3 + 0.3 * u + 0.001 * (seed % 7), 6)
    record = {"fitness": fit, "status": "gated" if gated else "ok", "steps": 10,
              "wall_time_s": 0.0, "curve": [], "gate_train_accuracy": None,
              "best_train_accuracy": 0.0, "best_val_accuracy": fit or 0.0, "message": ""}
    if until and not gated:
        score = round((7 * u + 0.3 * index) % 1.0, 6)  # a rung's own ranking
        record.update(status="paused", rung=index, fitness=round(fit * until / 1000, 6),
                      best_train_accuracy=score, best_val_accuracy=round(fit * until / 1000, 6),
                      wall_time_s=0.5, gate_train_accuracy=0.4 if index == 0 else None)
    return record
