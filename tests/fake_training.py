"""A fast, deterministic stand-in for one training cell (``lfe.worker.train_cell``'s
signature).

The accuracy is a hash of the loss and the number of steps, so rankings reshuffle from stage to
stage of the elimination protocol. Every call appends ``{"loss", "steps", "seed"}`` to the file
named by ``$LFE_FAKE_TRAIN_LOG`` (when set) and sleeps ``$LFE_FAKE_TRAIN_SLEEP`` seconds, so
tests can count trainings and kill a run between cells.
"""

import hashlib
import json
import os
import time


def train(spec: dict, protocol: dict, dataset: str, data_dir: str, seed: int,
          train_split: str = "train", eval_split: str = "val", checkpoint_dir: str = "") -> dict:
    del dataset, data_dir, checkpoint_dir
    steps = int(protocol["steps"])
    key = json.dumps([spec.get("genome", spec["name"]), steps, seed], sort_keys=True)
    u = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little") / 2**32
    if os.environ.get("LFE_FAKE_TRAIN_LOG"):
        with open(os.environ["LFE_FAKE_TRAIN_LOG"], "a") as f:
            f.write(json.dumps({"loss": spec["name"], "steps": steps, "seed": seed}) + "\n")
    time.sleep(float(os.environ.get("LFE_FAKE_TRAIN_SLEEP", "0")))
    acc = round(0.4 + 0.5 * u, 6)
    return {"accuracy": acc, "final_accuracy": acc - 0.01, "best_train_accuracy": acc,
            "status": "ok", "steps_run": steps, "wall_time_s": 0.0, "curve": [],
            "message": "", "train_split": train_split, "eval_split": eval_split}
