import numpy as np
from PIL import Image

from lfe.training import losses as L
from lfe.training import plots


def test_normalised_phenotype_of_cross_entropy():
    x, curve = plots.normalised_phenotype(L.get("cross_entropy"))
    assert x[0] > x[-1]  # index 0 is the correct answer (yhat -> 1)
    assert curve.min() == 0.0 and curve.max() == 1.0
    assert curve[0] == 0.0 and curve[-1] == 1.0  # CE is minimal at yhat = 1


def test_zoom_uses_the_full_range_normalisation():
    loss = L.get("neuroloss3")
    _, full = plots.normalised_phenotype(loss)
    p = np.array([1e-7, 1e-3])
    x, zoom = plots.normalised_phenotype(loss, p)
    np.testing.assert_allclose(x, 1 - p)
    np.testing.assert_allclose(zoom[0], full[0], atol=1e-6)
    assert zoom.max() < 0.05


def test_write_figures(tmp_path):
    paths = plots.write_figures([L.get(n) for n in ("cross_entropy", "neuroloss1",
                                                    "neuroloss2", "neuroloss3")], str(tmp_path))
    assert [p.split("/")[-1] for p in paths] == ["phenotypes.png", "phenotypes_zoom.png"]
    for p in paths:
        img = Image.open(p)
        assert img.size[0] > 500 and img.size[1] > 300
        assert len(np.unique(np.asarray(img).reshape(-1, 4), axis=0)) > 10  # not blank


def test_plot_curves_mean_and_band(tmp_path):
    def record(loss, offset):
        return {"loss": loss, "curve": [[s, 0.5, 0.3 + offset + s / 1e4, 1.0] for s in
                                         (100, 200, 300)]}

    records = [record("cross_entropy", 0.0), record("cross_entropy", 0.02), record("nl", 0.05),
               {"loss": "gate_only", "curve": [[100, 0.5, None, 1.0]]}]
    path = plots.plot_curves(records, str(tmp_path / "c.png"))
    img = np.asarray(Image.open(path))
    assert img.shape[1] > 500 and len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 10
