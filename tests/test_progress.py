"""lfe.core.progress: the run's clock, the ETA, the progress line, TensorBoard's scalars."""

import pytest

from lfe.core import progress
from lfe.core.state import Evaluated, LogRow, Member, State


def told(cid, stage="initial", fitness=0.5, status="ok", iteration=None, parent=None,
         failed_children=0):
    return Evaluated(cid, {}, 1, "eq", stage, iteration, parent, failed_children,
                     {"status": status, "fitness": fitness})


def state(evaluated=(), in_flight=0, phase="initial", done=0, log=(), population=()):
    flying = [told(100 + i).candidate() for i in range(in_flight)]
    return State(seed=0, rng={}, phase=phase, evaluated=list(evaluated), in_flight=flying,
                 iterations_done=done, log=list(log), population=list(population))


def eta(pace, s, now, rescore=0):
    return progress.eta(pace, s, initial_population=10, max_iterations=5, rescore=rescore,
                        now=now)


def test_formats():
    assert progress.percent(0.20059999823570251) == "20.06%"
    assert progress.percent(None) == "-"
    assert [progress.duration(s) for s in (42, 738, 7500)] == ["42 s", "12.3 min", "2 h 05 min"]


def test_the_clock_adds_the_sessions_before():
    clock = progress.Clock(before=600.0, start=1000.0)
    assert clock.elapsed(1090.0) == 690.0
    assert clock.elapsed(990.0) == 600.0  # a clock set back never counts down


def test_eta_from_the_first_initial_evaluation():
    pace = progress.start_pace(state(), now=0.0)
    assert eta(pace, state(in_flight=2), now=5.0) is None  # nothing timed yet
    s = state([told(0), told(1)], in_flight=2)
    # 2 told + 2 in flight at half = 3 evaluations in 30 s: 10 s each; left: 10 - 2 - 1
    # initial evaluations and 5 iterations at one initial evaluation's cost each
    assert eta(pace, s, now=30.0) == pytest.approx(120.0)
    assert eta(pace, s, now=30.0, rescore=4) == pytest.approx(160.0)  # 4 re-scorings to come
    one = state([told(0)], in_flight=1)  # the very first evaluation gives an ETA
    assert eta(pace, one, now=30.0) == pytest.approx(20.0 * (10 - 1 - 0.5 + 5))


def test_eta_of_iterations_counts_the_children_per_iteration():
    initial = [told(i) for i in range(10)]
    children = [told(10 + i, "surrogate", iteration=1 + i // 2, parent=0) for i in range(4)]
    before = state(initial + children[:1], phase="evolve", done=0)
    pace = progress.start_pace(before, now=0.0)  # resumed in the evolution phase
    assert (pace.phase, pace.since, pace.told) == ("evolve", 0.0, 11)
    s = state(initial + children, in_flight=2, phase="evolve", done=2)
    # 3 children timed + 2 in flight at half: 10 s per child; 4 children / 2 iterations: 20 s
    # per iteration; 3 iterations left, less the half of the 2 in flight
    assert eta(pace, s, now=40.0) == pytest.approx(3 * 20.0 - 10.0)
    assert eta(pace, state(initial + children, phase="evolve", done=5), now=40.0) == 0.0


def test_eta_right_after_the_population_forms_uses_the_initial_pace():
    pace = progress.start_pace(state(), now=0.0)
    formed = state([told(i) for i in range(10)], in_flight=2, phase="evolve")
    pace = progress.observe(pace, formed, now=50.0)
    assert (pace.phase, pace.since, pace.told, pace.before) == ("evolve", 50.0, 10, 5.0)
    assert progress.observe(pace, formed, now=60.0) is pace
    # 10 initial evaluations in 50 s: a child is taken to cost 5 s until one is timed
    assert eta(pace, formed, now=50.0) == pytest.approx(5 * 5.0 - 5.0)


def test_eta_while_the_initial_members_are_scored_again():
    initial = [told(i) for i in range(4)]
    pace = progress.observe(progress.start_pace(state(), now=0.0),
                            state(initial, in_flight=2, phase="rescore"), now=40.0)
    rescored = told(10, "surrogate", 0.6, parent=0)
    s = state(initial + [rescored], in_flight=1, phase="rescore",
              population=[Member(10, 0, 0.6), Member(1, 0, 0.5)])
    # one re-scoring in 20 s with one in flight (half done): 20 / 1.5 s each; member 1 and 5
    # iterations left, less the half in flight
    assert eta(pace, s, now=60.0) == pytest.approx(20.0 / 1.5 * (1 + 5 - 0.5))
    text = progress.line(s, 10, {"status": "ok", "fitness": 0.6}, initial_population=4,
                         max_iterations=5, max_failed_children=7, elapsed=1.0, eta_s=None)
    assert text.startswith("[rescore 1/2] cand 10 (re-scores 0): ok 60.00%")


def test_progress_lines_name_the_stage_and_the_child_s_own_iteration():
    s = state([told(0, fitness=0.41234), told(1, fitness=0.2)], in_flight=14)
    text = progress.line(s, 1, {"status": "ok", "fitness": 0.2}, initial_population=16,
                         max_iterations=4, max_failed_children=7, elapsed=75.0, eta_s=600.0)
    assert text.startswith("[initial 2/16] cand 1: ok 20.00%  best so far 41.23%")
    assert "elapsed 1.2 min  ETA 10.0 min" in text and "iter" not in text
    child = told(20, "surrogate", None, "gated", iteration=1, parent=3, failed_children=1)
    s = state([told(0), child], phase="evolve", done=0)
    text = progress.line(s, 20, {"status": "gated"}, initial_population=1, max_iterations=4,
                         max_failed_children=7, elapsed=5.0, eta_s=None)
    assert text.startswith("[iter 1/4] cand 20 (child of 3): gated, failed child 2/7; another "
                           "child  best so far 50.00%")
    assert "iterations done 0/4" in text and "ETA" not in text


def test_summary_lines_show_fitness_as_percentages():
    lines = progress.summary_lines({"iterations": 4, "best": 0.20059999823570251,
                                    "best_evaluated": None}, elapsed=3725.0)
    assert lines == ["iterations: 4", "best: 20.06%", "best_evaluated: -",
                     "elapsed: 1 h 02 min (all sessions)"]


def test_history_scalars_follow_the_log_by_hand():
    ev = [told(0, fitness=0.3), told(1, fitness=0.5),  # initial; population forms at 1
          told(2, "surrogate", None, "gated", iteration=1, parent=1),
          told(3, "surrogate", 0.6, iteration=1, parent=1, failed_children=1),
          told(4, "surrogate", None, "gated", iteration=3, parent=1)]
    log = [LogRow(0, None, "initial", None, None, 0.5, 0.4, 0.4),
           LogRow(1, 1, "added", 3, None, 0.6, 0.5, 0.5),
           LogRow(2, 2, "skipped_mutation", None, None, 0.6, 0.5, 0.5),
           LogRow(3, 3, "skipped_failed_children", None, None, 0.6, 0.5, 0.5)]
    rows = progress.history_scalars(state(ev, phase="evolve", done=3, log=log))
    assert [(step, cid) for step, cid, _ in rows] == [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4)]
    assert rows[0][2] == {"evaluated": 1, "iterations": 0, "candidate/fitness": 0.3}
    assert rows[1][2] == {"evaluated": 2, "iterations": 0, "population/best": 0.5,
                          "population/mean": 0.4, "population/median": 0.4,
                          "candidate/fitness": 0.5}
    assert rows[2][2]["iterations"] == 0 and "candidate/fitness" not in rows[2][2]
    assert rows[3][2]["iterations"] == 1 and rows[3][2]["population/best"] == 0.6
    # the skipped mutation (an ask after evaluation 4) and the skipped iteration 3 (its 1st
    # failed child with max_failed_children = 1) are both seen at evaluation 5
    assert rows[4][2]["iterations"] == 3


def test_the_eta_is_capped_by_the_budgets():
    s = state([Evaluated(0, {}, 1, "eq", "initial", None, None, 0,
                         {"status": "ok", "fitness": 0.5, "wall_time_s": 1800.0})], in_flight=2)
    # 0.5 core-hours spent of 1.5: 3,600 core-seconds left, spent by 2 workers side by side
    assert progress.budget_eta(9000.0, s, max_core_hours=1.5, parallel=2) == pytest.approx(1800.0)
    assert progress.budget_eta(9000.0, s, max_core_hours=1.5) == pytest.approx(3600.0)
    assert progress.budget_eta(600.0, s, max_core_hours=1.5) == 600.0  # iterations end first
    assert progress.budget_eta(9000.0, s, hours_left_s=700.0, max_core_hours=1.5) == 700.0
    assert progress.budget_eta(None, s, max_core_hours=1.5, parallel=2) == pytest.approx(1800.0)
    assert progress.budget_eta(None, s) is None and progress.budget_eta(42.0, s) == 42.0
    assert progress.budget_eta(9000.0, s, max_core_hours=0.4) == 0.0  # spent already


def test_steps_spent_and_the_step_budget():
    from lfe.core.state import Arrival
    done = [Evaluated(i, {}, 1, "eq", "initial", None, None, 0,
                      {"status": "ok", "fitness": 0.5, "steps": 2000, "wall_time_s": 900.0})
            for i in range(2)]
    s = state(done, in_flight=2)  # ids 100 and 101 in flight; 100 paused at a rung before
    s.rung_log.append(Arrival(100, 0, 0.4, True, 1200, 450.0, 0.5))
    s.rung_log.append(Arrival(7, 0, 0.3, False, 1200, 450.0, 0.5))  # told: in its record
    assert progress.steps_spent(s) == 2 * 2000 + 1200
    assert progress.core_hours(s) == pytest.approx((2 * 900 + 450) / 3600)
    # 5,200 steps cost 2,250 core-seconds; 10,400 - 5,200 steps left, over 2 workers
    assert progress.budget_eta(1e6, s, max_steps=10_400, parallel=2) == pytest.approx(2250 / 2)
    assert progress.budget_eta(1e6, s, max_steps=5000) == 0.0
