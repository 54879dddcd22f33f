"""Progress lines: one per block, at most one per `every` seconds, and always the step's last."""

from __future__ import annotations

import time

from campaign_pipelines.progress import Progress


def test_blocks_within_the_interval_are_held_back_but_the_last_block_is_logged():
    logged: list[str] = []
    progress = Progress("validate_rows", logged.append, total=1000, every=3600)
    for lines in (250, 500, 750, 1000):
        progress.update(lines, 2)
    progress.finish()  # the last line is out already: nothing more
    assert len(logged) == 1
    assert logged[0].startswith("progress validate_rows: 1,000 of 1,000 lines (100%), 2 rejected so far,")


def test_a_line_goes_out_once_the_interval_has_passed():
    logged: list[str] = []
    progress = Progress("read_file", logged.append, total=1000, every=1.0)
    progress.update(100, 0)  # within the step's first second: held back
    time.sleep(1.1)
    progress.update(200, 1)
    progress.update(300, 1)  # right after a line: held back
    assert len(logged) == 1 and logged[0].startswith("progress read_file: 200 of 1,000 lines (20%), 1 rejected so far,")


def test_every_zero_logs_every_block():
    logged: list[str] = []
    progress = Progress("map_columns", logged.append, total=3, every=0)
    for lines in (1, 2, 3):
        progress.update(lines, 0)
    assert len(logged) == 3


def test_with_no_total_finish_logs_the_last_block_held_back():
    """An export's row count is not known ahead: its last block is only known at the end."""
    logged: list[str] = []
    progress = Progress("export_file", logged.append, every=3600)
    progress.update(50_000, None)
    progress.update(80_000, None)
    assert logged == []
    progress.finish()
    assert len(logged) == 1 and logged[0].startswith("progress export_file: 80,000 lines,")
