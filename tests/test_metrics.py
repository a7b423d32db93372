import os
import struct

from tensorboardX.proto import event_pb2

from lfe.core import metrics


def test_writer_writes_tensorboard_event_files(tmp_path):
    w = metrics.create_writer(str(tmp_path))
    w.write_scalars(1, {"fitness/best": 0.5, "fitness/mean": 0.4})
    w.write_texts(1, {"best": "ln(|ŷ|+eps)"})
    w.write_hparams({"population": 100})
    w.flush()
    w.close()
    files = [f for f in os.listdir(tmp_path) if f.startswith("events.out.tfevents")]
    assert files and os.path.getsize(tmp_path / files[0]) > 100
    data = (tmp_path / files[0]).read_bytes()
    tags, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        event = event_pb2.Event.FromString(data[pos + 12: pos + 12 + length])
        tags += [v.tag for v in event.summary.value]
        pos += 12 + length + 4
    assert "fitness/best" in tags and "fitness/mean" in tags


def test_scalars_read_back_with_their_steps_and_times(tmp_path):
    w = metrics.create_writer(str(tmp_path))
    w.write_scalars(1, {"a": 0.5, "b": 2.0}, walltime=1000.5)
    w.write_scalars(2, {"a": 0.25})
    w.close()
    got = metrics.read_scalars(str(tmp_path))
    assert [(s, v) for s, v, _ in got["a"]] == [(1, 0.5), (2, 0.25)]
    assert got["b"] == [(1, 2.0, 1000.5)]
    (path,) = metrics.event_files(str(tmp_path))
    with open(path, "ab") as f:
        f.write(b"\x10\x00\x00")  # a record cut short by a kill: reading stops there
    assert metrics.read_scalars(str(tmp_path)) == got
    (tmp_path / "keep.txt").write_text("x")
    assert metrics.remove_event_files(str(tmp_path)) == 1
    assert os.listdir(tmp_path) == ["keep.txt"] and metrics.read_scalars(str(tmp_path)) == {}
    assert metrics.event_files(str(tmp_path / "none")) == []


def test_writer_does_not_import_torch(tmp_path):
    """tensorboardX would import torch when installed; the writer must not pull it in."""
    import subprocess
    import sys
    code = ("import sys; from lfe.core.metrics import MetricWriter; "
            f"w = MetricWriter({str(tmp_path)!r}); w.write_scalars(0, {{'a': 1.0}}); w.close(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_importing_the_module_changes_no_global_state():
    """The torch mask lives in the writer factory: importing lfe.core.metrics imports neither
    tensorboardX nor a torch stand-in, and a writer leaves no 'torch' entry behind."""
    import subprocess
    import sys
    code = ("import sys; import lfe.core.metrics as m; "
            "assert 'torch' not in sys.modules and 'tensorboardX' not in sys.modules; "
            "m._summary_writer_class(); assert 'tensorboardX' in sys.modules; "
            "assert 'torch' not in sys.modules, sys.modules.get('torch')")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_loaded_torch_is_left_alone(monkeypatch):
    import sys
    import types
    metrics._summary_writer_class()  # tensorboardX loaded first: a stand-in is never probed
    fake = types.ModuleType("torch")
    monkeypatch.setitem(sys.modules, "torch", fake)
    assert metrics._summary_writer_class().__name__ == "SummaryWriter"
    assert sys.modules["torch"] is fake
