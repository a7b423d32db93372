import pytest

from lfe.core import rungs


def test_promotion_rule_by_hand():
    # first arrival: rank 1 of 1, ceil(1/3) = 1 -> promoted
    assert rungs.promoted(0.1, [], 1 / 3)
    # second: must be the better of two (ceil(2/3) = 1)
    assert not rungs.promoted(0.4, [0.5], 1 / 3) and rungs.promoted(0.6, [0.5], 1 / 3)
    # third at 1/3: ceil(1) = 1 (no float slack: 3 * (1/3) is 1); rank 2 of 3 stops
    assert not rungs.promoted(0.45, [0.5, 0.4], 1 / 3)
    # fourth at 1/3: ceil(4/3) = 2 -> rank 2 passes, rank 3 does not
    assert rungs.promoted(0.45, [0.5, 0.4, 0.3], 1 / 3)
    assert not rungs.promoted(0.35, [0.5, 0.4, 0.3], 1 / 3)
    # 1/2 of 4 = 2; ties favour the newcomer
    assert rungs.promoted(0.4, [0.5, 0.4, 0.4], 1 / 2)
    assert not rungs.promoted(0.39, [0.5, 0.4, 0.1], 1 / 2)
    # fraction 1 promotes everyone
    assert rungs.promoted(0.0, [1.0, 2.0], 1.0)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_bad_fraction_is_refused(fraction):
    with pytest.raises(ValueError, match="fraction"):
        rungs.promoted(0.5, [], fraction)


def _candidate(i, scores, arrival):
    return rungs.Candidate(i, lambda step: scores[step], lambda step: arrival + step / 1000,
                           steps=2000)


def test_replay_by_hand():
    # Arrival order 1, 2, 3, 4 at both rungs; fraction 1/2.
    # Rung 400: 1 (0.3) first -> up; 2 (0.2): rank 2 of 2, ceil(1) = 1 -> stop;
    #           3 (0.4): rank 1 of 3 -> up; 4 (0.35): rank 2 of 4, ceil(2) = 2 -> up.
    # Rung 1200 (1, 3, 4 arrive): 1 (0.5) up; 3 (0.45): rank 2 of 2 -> stop;
    #           4 (0.6): rank 1 of 3 -> up (trains in full).
    cands = [_candidate(1, {400: 0.3, 1200: 0.5}, 0), _candidate(2, {400: 0.2, 1200: 0.9}, 1),
             _candidate(3, {400: 0.4, 1200: 0.45}, 2), _candidate(4, {400: 0.35, 1200: 0.6}, 3)]
    stops = rungs.replay(cands, [400, 1200], 0.5)
    assert {i: s.rung for i, s in stops.items()} == {1: None, 2: 400, 3: 1200, 4: None}
    assert stops[2].steps_run == 400 and stops[2].steps_saved == 1600
    assert stops[3].steps_saved == 800 and stops[1].steps_saved == 0
    # arrival order decides, not list order
    assert rungs.replay(list(reversed(cands)), [400, 1200], 0.5) == stops


def test_replay_refuses_bad_rungs_and_ids():
    cand = _candidate(1, {}, 0)
    for bad in ([], [400, 200], [0], [2000], [400, 400]):
        with pytest.raises(ValueError, match="rungs"):
            rungs.replay([cand], bad, 0.5)
    with pytest.raises(ValueError, match="distinct"):
        rungs.replay([cand, cand], [400], 0.5)
