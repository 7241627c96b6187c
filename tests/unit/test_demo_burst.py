"""The burst tour's bookkeeping (``tasks.demo.burst``): what it concludes from what it saw."""

from __future__ import annotations

import pytest

from tasks.demo.burst import Look, Outcome, changed, look_line, main, summary_lines


def look(
    at: float, completed: int, workers: int, desired: int | None = None, backlog: int | None = 0
) -> Look:
    return Look(at, completed, backlog, workers, workers if desired is None else desired, "reason")


def test_a_burst_that_grew_drained_and_shrank_back_is_absorbed_with_its_times() -> None:
    outcome = Outcome(
        100,
        1,
        (
            look(0.0, 0, 1, backlog=100),
            look(2.0, 10, 1, 3),
            look(4.0, 60, 3),
            look(6.0, 100, 3),
            look(9.0, 100, 1),
        ),
    )
    assert outcome.first_scale_up_at == 4.0
    assert outcome.peak == 3
    assert outcome.drained_at == 6.0
    assert outcome.back_to_minimum_at == 9.0
    assert outcome.absorbed
    lines = summary_lines(outcome, 0, 60)
    assert "Burst of 100 tasks drained in 6.0s." in lines
    assert "First scale-up 4.0s after the burst; peak 3 workers." in lines
    assert "Back to 1 worker(s) 9.0s after the burst." in lines


def test_a_pool_at_its_minimum_before_it_ever_grew_is_not_counted_as_shrunk_back() -> None:
    outcome = Outcome(10, 1, (look(0.0, 0, 1), look(1.0, 10, 1), look(2.0, 10, 1)))
    assert outcome.drained_at == 1.0
    assert outcome.back_to_minimum_at is None
    assert not outcome.absorbed
    assert "The pool never grew (is the burst above PLATFORM_SCALE_UP_ABOVE?)." in summary_lines(
        outcome, 0, 5
    )


def test_a_burst_not_drained_by_the_timeout_says_how_far_it_got() -> None:
    outcome = Outcome(1_000, 1, (look(0.0, 0, 1), look(30.0, 420, 3)))
    assert not outcome.absorbed
    assert "Not drained: 420 of 1,000 completed within 30s." in summary_lines(outcome, None, 30)


def test_a_pool_still_large_at_the_timeout_names_the_settings_that_shrink_it() -> None:
    outcome = Outcome(10, 1, (look(0.0, 0, 1), look(1.0, 10, 3)))
    assert any("PLATFORM_SCALE_WINDOW" in line for line in summary_lines(outcome, 0, 1))


def test_the_timeline_prints_a_line_only_when_something_an_operator_cares_about_moved() -> None:
    first = look(0.0, 0, 1, backlog=2_500)
    assert changed(None, first)
    assert not changed(first, look(1.0, 0, 1, backlog=2_100))  # same thousands, same pool
    assert changed(first, look(1.0, 0, 1, backlog=1_900))
    assert changed(first, look(1.0, 5, 1, backlog=2_400))  # the first completions
    assert changed(first, look(1.0, 0, 1, 3, backlog=2_400))
    assert "workers 1 -> 3" in look_line(look(1.0, 0, 1, 3, backlog=2_400))
    assert "backlog      ?" in look_line(look(1.0, 0, 1, backlog=None))


@pytest.mark.parametrize("argv", [["--tasks", "0"], ["--tasks", "many"], ["--millis", "x"]])
def test_bad_arguments_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("error:") == 1
