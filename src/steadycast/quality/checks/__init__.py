"""The ``check`` stage: series-level and run-level data-quality checks, as Spec -> Result.

Each check is a plain function over the raw stored observations of many series (a long frame
``unique_id, ds, y``, not yet regularised: gaps, stuck meters and jumps must be seen as they
arrived) and a ``CheckContext``; it returns one ``CheckResult`` per series (or one per run for
the run-level checks), each with a severity, a ``blocking`` flag, the series it concerns and a
sentence a person understands. Results are data: the run stores them, the gate reads them,
incidents are raised from them.

Checks, and what they look at:

    freshness      a series' latest data lags the pipeline's newest (or the clock)
    completeness   share of missing steps in the recent window; longest gap in it
    flat_line      a run of identical readings (stuck meter), zero runs included
    spikes         robust z-score against the same phase of nearby seasons, recent window
    level_shift    a lasting jump in level (median of adjacent windows, scaled by the noise)
    feed_fault     the newest delivery broken against the series' own recent history: zeros,
                   stuck, cumulative register, sign flip, scale (unit) change, time-zone shift;
                   run-level, the share of the fleet with a feed fault
    volume_parity  series or rows that vanished or appeared in bulk since the last published run
    pass_share     the share of series that pass drops against the last published run

A failed check's ``policy`` says what happens: ``warn`` (recorded), ``exclude`` (the series
leaves this run), ``stop`` (the run is held by the gate's ``blocking_checks`` rule). A check with
``exclude`` or ``stop`` is *blocking*. A level shift also moves the start of the series'
training window to the shift (``level_shift_cuts``), whatever its policy, unless
``checks.level_shift.cut_training`` is off.

Everything is vectorised over series with numpy (sorted arrays, ``reduceat``, and series laid
out as rows of a padded grid matrix, a chunk of series at a time); only series that have a
level-shift candidate get a Python loop.

Modules:

    spec.py          CheckSpec, CheckResult, build_specs (every "auto" limit resolved)
    context.py       CheckContext (clock, newest data, previous run) and RunFigures
    series.py        freshness, completeness, flat_line, spikes
    level_shift.py   level_shift: the latest lasting jump in level, and when it happened
    feed_fault.py    feed_fault: the newest delivery against the series' own history
    parity.py        run-level: volume parity, feed-fault share, pass share, the run's figures
    running.py       run_checks, check_series, check_run; reading results (excluded series,
                     stop results, level-shift cuts, the results frame)
    _frame.py        the long frame sorted and indexed once
    _arrays.py       padded-matrix helpers: grouped quantiles, chunks, run lengths
    _feed_grid.py    the feed-fault tests on a grid of series, one step per kind
    _feed_shift.py   time-zone shifts at the seam and over the fleet's summed profiles
    _text.py         how numbers and times read in sentences
"""

from __future__ import annotations

from steadycast.quality.checks.context import CheckContext, RunFigures
from steadycast.quality.checks.feed_fault import FEED_FAULT_KINDS, check_feed_fault
from steadycast.quality.checks.level_shift import check_level_shift
from steadycast.quality.checks.parity import (
    check_feed_fault_share,
    check_pass_share,
    check_volume_parity,
    measure,
)
from steadycast.quality.checks.running import (
    check_run,
    check_series,
    excluded_series,
    level_shift_cuts,
    results_frame,
    run_checks,
    stop_results,
)
from steadycast.quality.checks.series import (
    check_completeness,
    check_flat_line,
    check_freshness,
    check_spikes,
)
from steadycast.quality.checks.spec import (
    RESULT_COLUMNS,
    SERIES_CHECKS,
    CheckResult,
    CheckSpec,
    Policy,
    build_specs,
    reference_period,
)
from steadycast.quality.severity import Severity

__all__ = [
    "FEED_FAULT_KINDS",
    "RESULT_COLUMNS",
    "SERIES_CHECKS",
    "CheckContext",
    "CheckResult",
    "CheckSpec",
    "Policy",
    "RunFigures",
    "Severity",
    "build_specs",
    "check_completeness",
    "check_feed_fault",
    "check_feed_fault_share",
    "check_flat_line",
    "check_freshness",
    "check_level_shift",
    "check_pass_share",
    "check_run",
    "check_series",
    "check_spikes",
    "check_volume_parity",
    "excluded_series",
    "level_shift_cuts",
    "measure",
    "reference_period",
    "results_frame",
    "run_checks",
    "stop_results",
]
