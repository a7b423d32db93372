import os

import numpy as np
import pytest
from scipy import stats as sps

from configs import table4
from lfe import compare, stats


def tiny_config(cifar_dir):
    c = table4.get_config("runlocal")
    c.data_dir = str(cifar_dir)
    c.protocol.steps = c.protocol.total_steps = 40
    c.protocol.warmup_steps = 10
    c.protocol.eval_every = 20
    c.protocol.eval_batch_size = 1000
    return c


@pytest.mark.slow
def test_grid_runs_resumes_and_tabulates(cifar_dir, tmp_path):
    c = tiny_config(cifar_dir)
    rows = compare.run(c, str(tmp_path))
    cells = sorted(os.listdir(tmp_path / "cells"))
    assert cells == ["cross_entropy__seed0.json", "cross_entropy__seed1.json",
                     "neuroloss3__seed0.json", "neuroloss3__seed1.json"]
    assert [r["loss"] for r in rows] == ["cross_entropy", "neuroloss3"]
    assert all(r["n"] == 2 and 0.05 < r["mean"] / 100 < 1 for r in rows)
    md = (tmp_path / "results.md").read_text()
    assert "| neuroloss3 | 2 |" in md and "58.660 ± 0.557" in md
    assert (tmp_path / "results.csv").read_text().startswith("loss,runs,mean")

    # an interrupted grid: one cell lost; the rerun trains only that one
    kept = tmp_path / "cells" / "cross_entropy__seed0.json"
    before = kept.stat().st_mtime_ns
    os.remove(tmp_path / "cells" / "neuroloss3__seed1.json")
    compare.run(c, str(tmp_path))
    assert kept.stat().st_mtime_ns == before
    assert (tmp_path / "cells" / "neuroloss3__seed1.json").exists()

    c.protocol.steps = 50
    with pytest.raises(ValueError, match="different protocol"):
        compare.run(c, str(tmp_path))


def test_results_table_statistics_match_scipy():
    rng = np.random.default_rng(0)
    ce, nl = rng.normal(57, 0.6, 5), rng.normal(58, 0.5, 5)
    cells = {f"cross_entropy__seed{i}": {"loss": "cross_entropy", "best_val_accuracy": v / 100}
             for i, v in enumerate(ce)}
    cells |= {f"neuroloss1__seed{i}": {"loss": "neuroloss1", "best_val_accuracy": v / 100}
              for i, v in enumerate(nl)}
    rows = compare.results_table(cells, ["cross_entropy", "neuroloss1"], {})
    assert rows[1]["mean"] == pytest.approx(nl.mean()) and rows[1]["std"] == pytest.approx(
        nl.std(ddof=1))
    assert rows[1]["p_greater"] == pytest.approx(
        sps.ttest_ind(nl, ce, equal_var=False, alternative="greater").pvalue)
    assert rows[1]["p_two_sided"] == pytest.approx(sps.ttest_ind(nl, ce, equal_var=False).pvalue)
    md = compare.format_markdown(rows, "T")
    assert md.count("**") == 2 and "| cross_entropy | 5 |" in md


def test_welch_by_hand():
    # a = [1, 2, 3], b = [2, 4, 6]: t = -2/sqrt(1/3 + 4/3) = -1.549, df = 2.941
    p = stats.welch([1, 2, 3], [2, 4, 6])
    t = -2 / np.sqrt(1 / 3 + 4 / 3)
    df = (5 / 3) ** 2 / ((1 / 3) ** 2 / 2 + (4 / 3) ** 2 / 2)
    assert p == pytest.approx(2 * sps.t.cdf(t, df))
    assert np.isnan(stats.welch([1], [2, 3]))
