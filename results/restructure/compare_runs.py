"""Before/after equality check of the restructuring (issue: architecture step).

Compares two directories each holding ``table4/`` (``configs/table4.py:runlocal``) and
``quickstart/`` (``configs/quickstart.py:runlocal`` with ``--config.executor=inprocess``) run
directories: every training record (accuracy curves, fitness, status, steps), every genome and
the whole evolution state must be identical; only wall-clock times, timestamps and the code
revision may differ.

    python results/restructure/compare_runs.py BEFORE_DIR AFTER_DIR
"""

import json
import os
import sys

VOLATILE = {"wall_time_s", "finished_at", "git_revision", "time"}


def strip(value):
    """``value`` without the fields that record when and by which revision it ran."""
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def load(path):
    with open(path) as f:
        return json.load(f)


def main(before: str, after: str) -> int:
    report, same = [], True
    cells = sorted(os.listdir(os.path.join(before, "table4", "cells")))
    for name in cells:
        a = strip(load(os.path.join(before, "table4", "cells", name)))
        b = strip(load(os.path.join(after, "table4", "cells", name)))
        ok = a == b
        same &= ok
        report.append(f"table4/cells/{name}: {'identical' if ok else 'DIFFERENT'} "
                      f"(best val {a['accuracy']:.4f}, {len(a['curve'])} curve rows)")
    a = strip(load(os.path.join(before, "quickstart", "state.json"))["state"])
    b = strip(load(os.path.join(after, "quickstart", "state.json"))["state"])
    ok = a == b
    same &= ok
    report.append(f"quickstart/state.json: {'identical' if ok else 'DIFFERENT'} "
                  f"({len(a['evaluated'])} evaluated candidates, genomes, records with curves, "
                  f"population, log, RNG)")
    for name in ("events.jsonl",):
        ea = [strip(json.loads(line)) for line in open(os.path.join(before, "quickstart", name))]
        eb = [strip(json.loads(line)) for line in open(os.path.join(after, "quickstart", name))]
        ok = ea == eb
        same &= ok
        report.append(f"quickstart/{name}: {'identical' if ok else 'DIFFERENT'} "
                      f"({len(ea)} events)")
    for name in ("best.json",):
        ok = load(os.path.join(before, "quickstart", name)) == \
            load(os.path.join(after, "quickstart", name))
        same &= ok
        report.append(f"quickstart/{name}: {'identical' if ok else 'DIFFERENT'}")
    print("\n".join(report))
    print("ALL IDENTICAL" if same else "DIFFERENCES FOUND")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
