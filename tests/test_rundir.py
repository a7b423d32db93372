import json
import os

import pytest

from lfe.core import rundir


def test_save_load_round_trip_and_previous_checkpoint(tmp_path):
    assert rundir.load_state(str(tmp_path)) is None
    rundir.save_state(str(tmp_path), {"a": 1})
    rundir.save_state(str(tmp_path), {"a": 2, "b": [1.5, None]})
    assert rundir.load_state(str(tmp_path)) == {"a": 2, "b": [1.5, None]}
    assert json.load(open(tmp_path / "state.prev.json"))["state"] == {"a": 1}
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]



def test_the_run_clock_lies_beside_the_state(tmp_path):
    rundir.save_state(str(tmp_path), {"a": 1})  # a run that keeps no clock (older runs)
    assert rundir.elapsed_of(rundir.load_checkpoint(str(tmp_path))) == 0.0
    rundir.save_state(str(tmp_path), {"a": 2}, elapsed=12.34567)
    checkpoint = rundir.load_checkpoint(str(tmp_path))
    assert checkpoint["state"] == rundir.load_state(str(tmp_path)) == {"a": 2}
    assert rundir.elapsed_of(checkpoint) == 12.346
    assert rundir.elapsed_of(None) == 0.0 and rundir.elapsed_of({"elapsed_s": "x"}) == 0.0
    assert rundir.load_checkpoint(str(tmp_path / "fresh")) is None

@pytest.mark.parametrize("damage", ["truncate", "checksum", "garbage"])
def test_damaged_state_falls_back_to_previous(tmp_path, damage, capsys):
    rundir.save_state(str(tmp_path), {"a": 1})
    rundir.save_state(str(tmp_path), {"a": 2})
    path = tmp_path / "state.json"
    text = path.read_text()
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage == "checksum":
        path.write_text(text.replace('"a": 2', '"a": 3').replace('"a":2', '"a":3'))
    else:
        path.write_text("\x00\x01")
    assert rundir.load_state(str(tmp_path)) == {"a": 1}
    assert "previous checkpoint" in capsys.readouterr().err


def test_no_good_checkpoint_is_an_error_not_a_restart(tmp_path):
    rundir.save_state(str(tmp_path), {"a": 1})
    (tmp_path / "state.json").write_text("{")
    with pytest.raises(rundir.CorruptRunError, match="no good checkpoint") as e:
        rundir.load_state(str(tmp_path))
    assert "\n" not in str(e.value)


def test_kill_between_renames_leaves_the_previous_state(tmp_path):
    rundir.save_state(str(tmp_path), {"a": 1})
    rundir.save_state(str(tmp_path), {"a": 2})
    os.remove(tmp_path / "state.json")  # as if killed after moving it to state.prev.json
    assert rundir.load_state(str(tmp_path)) == {"a": 1}


def test_events_survive_a_torn_last_line(tmp_path):
    rundir.append_event(str(tmp_path), {"id": 1})
    with open(tmp_path / "events.jsonl", "a") as f:
        f.write('{"id": 2, "rec')  # killed mid-write
    assert rundir.read_events(str(tmp_path)) == [{"id": 1}]
    rundir.repair_events(str(tmp_path))
    rundir.append_event(str(tmp_path), {"id": 3})
    assert rundir.read_events(str(tmp_path)) == [{"id": 1}, {"id": 3}]
