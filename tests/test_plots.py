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


def test_minimum_location_hand_computed():
    # (ŷ - 0.9)² on the correct class (y = 1), nothing on the wrong one: minimum at ŷ = 0.9.
    quad = L.LossDef("quad", lambda y, yhat: y * (yhat - 0.9) ** 2)
    assert abs(plots.minimum_location(quad) - 0.9) < 2e-4  # the linear grid's step is 2.5e-4
    # cross-entropy decreases all the way: its minimum is at ŷ = 1 (1 - p rounds to 1 in float32)
    assert plots.minimum_location(L.get("cross_entropy")) == 1.0


def test_minimum_location_of_the_neuroloss1_reading_is_paper_s_0_99998():
    # -(ln(|h1|+ε) + ŷ·h1): the correct class rises as ŷ leaves 1 with slope c = 1/2 + 2^(1/2)
    # - 2^(-3/2) = 1.5607, the wrong class falls as ε²/(4p²) (h1 ≈ ε(1 - ε²/2p²) there), so the
    # minimum is at p³ = ε²/(2c), p ≈ 1.47e-5, ŷ ≈ 0.99998 (§4.5); float32 flattens it by a few
    # 1e-6 (NeuroLoss3's lands at 0.999986 for the same reason).
    c = 0.5 + 2 ** 0.5 - 2 ** -1.5
    p = (1e-14 / (2 * c)) ** (1 / 3)
    assert abs(p - 1.474e-5) < 1e-8
    at = plots.minimum_location(L.get("neuroloss1_reading"))
    assert abs((1 - at) - p) < 5e-6 and 0.99997 < at < 0.99999


def test_legend_labels_carry_the_equation_wrapped():
    label = plots.legend_label(L.get("neuroloss3"), " (x)")
    assert label.startswith("neuroloss3: h0 = (ŷ / (y+eps)); L = -((ln(")
    assert label.endswith(" (x)") and all(len(x) <= plots.LEGEND_WIDTH
                                          for x in label.splitlines())
    # a closed form: no genome
    assert plots.legend_label(L.get("neuroloss1_printed")) == "neuroloss1_printed"


def test_interior_minimum_by_hand():
    assert plots.interior_minimum(np.array([1.0, 0.5, 0.2, 0.3])) == 2
    assert plots.interior_minimum(np.array([1.0, 0.5, 0.0])) is None  # minimum at the end
    assert plots.interior_minimum(np.array([1.0, 0.0, 5e-6])) is None  # a float32 ripple


def test_the_zoom_s_spike_of_neuroloss3_is_its_minimum_at_0_99998():
    """NeuroLoss3's zoom rises at ŷ = 1: its ŷ/(y+ε) node is ŷ/ε on the wrong class, whose
    term falls by ln 2 as that class's probability p grows past ε (ln(|p/sqrt(1+(p/ε)²)|+ε)),
    against the correct class's slope 3/2 at ŷ = 1: the minimum is where ε²/(2p³) = 3/2,
    p = (ε²/3)^(1/3) = 1.49e-5, as the paper's ŷ = 0.99998."""
    p = np.geomspace(1e-7, 1.0 - plots.ZOOM_FROM, 2000)
    _, curve = plots.normalised_phenotype(L.get("neuroloss3"), p)
    at = plots.interior_minimum(curve)
    assert at is not None and abs(p[at] - (1e-14 / 3) ** (1 / 3)) < 3e-6  # float32: flat
    assert curve[0] > curve[at] + 1e-3  # the rise at ŷ = 1 - ε the linear panel shows
    _, ce = plots.normalised_phenotype(L.get("cross_entropy"), p)
    assert plots.interior_minimum(ce) is None


def test_figure_4_has_integer_iterations_and_the_best_so_far(tmp_path, monkeypatch):
    figures = []
    close = plots.plt.close
    monkeypatch.setattr(plots.plt, "close", lambda fig: (figures.append(fig), close(fig)))
    rows = [{"iteration": i, "best": b, "mean": 0.3, "median": 0.3}
            for i, b in enumerate([0.40, 0.45, 0.43, 0.44])]  # the population best falls
    plots.plot_evolution(rows, str(tmp_path / "e.png"), ce_band=(0.5, 0.45, 0.4))
    ax = figures[-1].axes[0]
    assert all(float(t).is_integer() for t in ax.get_xticks())
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["best so far"].get_ydata()) == [40.0, 45.0, 45.0, 45.0]
    assert {"population best", "population mean", "population median"} <= set(lines)
    assert any("population best can fall" in t.get_text() for t in figures[-1].texts)
    plots.plot_evolution([], str(tmp_path / "empty.png"))  # before the population forms
    assert "no iteration yet" in figures[-1].axes[0].texts[0].get_text()


def test_phenotype_figures_explain_their_axes(tmp_path, monkeypatch):
    figures = []
    close = plots.plt.close
    monkeypatch.setattr(plots.plt, "close", lambda fig: (figures.append(fig), close(fig)))
    plots.write_figures([L.get("cross_entropy"), L.get("neuroloss3")], str(tmp_path))
    full, zoom = figures
    assert any(t.get_text().startswith("Binary phenotype: the loss summed over two classes")
               for t in full.texts)
    assert [ax.get_xscale() for ax in zoom.axes] == ["linear", "log"]
    labels = zoom.legends[0].get_texts()
    assert any("min at ŷ = 1 − 1.4e-05" in " ".join(t.get_text().split()) for t in labels)
