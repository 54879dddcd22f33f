"""Progress of long work, a log line per block, at most one a second per step, and always
the step's last: what a step has done, what it rejected so far, the time spent and, when
the total is known (the file's size for the read, the lines read for the later steps; an
export's total is not known before its query ends), the time left. The run's log carries
the lines (the UI shows them as they come); `campaign-pipelines run` draws them as a bar
(`parse`). Each line is an event the instance commits (3-7 ms measured here by
bench/event_cost.py): a line per block would make a 10M-line import store 60 per step.

A line reads: `progress validate_rows: 450,000 of 1,000,000 lines (45%), 12 rejected so
far, 3.1 s elapsed, about 3.8 s left`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

PREFIX = "progress "
_LINE = re.compile(r"^progress (?P<step>\w+): [^(]*(?:\((?P<percent>\d+)%\))?")


@dataclass
class Progress:
    """Reports a step's blocks through `log` (the op's `context.log.info`)."""

    step: str
    log: Callable[[str], None]
    total: int | None = None  # of `unit`: bytes of the file, or lines
    unit: str = "lines"
    every: float = 1.0  # seconds between two lines of the step (0: every block)
    started: float = field(default_factory=time.monotonic)
    _logged: float | None = None  # when the last line went out
    _pending: str | None = None  # the latest block's line, when it did not

    def update(self, lines: int, rejected: int | None, done: int | None = None) -> str:
        """`done` (of `total`, in `unit`) defaults to `lines`; `rejected` None: the step rejects nothing (an export).
        Logs the line when the step is done or `every` seconds have passed since the last; returns it either way."""
        done = lines if done is None else done
        elapsed = time.monotonic() - self.started
        share = min(done / self.total, 1.0) if self.total else None
        counted = f"{lines:,} of {self.total:,} lines" if self.total and self.unit == "lines" else f"{lines:,} lines"
        text = f"{PREFIX}{self.step}: {counted}"
        if share is not None:
            text += f" ({share:.0%})"
        if rejected is not None:
            text += f", {rejected:,} rejected so far"
        text += f", {elapsed:.1f} s elapsed"
        if share:
            text += f", about {elapsed / share - elapsed:.1f} s left"
        now = time.monotonic()
        if share == 1.0 or now - (self._logged or self.started) >= self.every:
            self.log(text)
            self._logged, self._pending = now, None
        else:
            self._pending = text
        return text

    def finish(self) -> None:
        """After the step's last block: its line, if the `every` limit held it back (a total not known ahead)."""
        if self._pending is not None:
            self.log(self._pending)
            self._pending = None


def parse(message: str) -> tuple[str, float | None, str] | None:
    """(step, share done or None, the line without its prefix) of a progress line, else None."""
    match = _LINE.match(message)
    if match is None:
        return None
    percent = match["percent"]
    return match["step"], int(percent) / 100 if percent else None, message.removeprefix(PREFIX)


class Bar:
    """Draws progress lines on a terminal as one bar redrawn in place, or elsewhere (a
    file, a pipe: `--progress`) as one line each."""

    WIDTH = 24

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.tty = stream.isatty()
        self.drawn = False

    def draw(self, message: str) -> None:
        parsed = parse(message)
        if parsed is None:
            return
        _, share, text = parsed
        if not self.tty:
            self.stream.write(f"{PREFIX}{text}\n")
        else:
            filled = round(self.WIDTH * share) if share is not None else 0
            gauge = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(f"\r\x1b[2K[{gauge}] {text}")
            self.drawn = True
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def follow(instance: Any, run_id: str, bar: Bar, stop: threading.Event, every: float = 0.25) -> None:
    """Draw the run's progress lines as its events reach the instance, until `stop`
    (then once more: the last lines are not lost). Each look reads only the new events."""
    cursor = None
    while True:
        ended = stop.wait(every)
        while True:
            page = instance.get_records_for_run(run_id, cursor=cursor)
            for record in page.records:
                message = record.event_log_entry.user_message
                if message.startswith(PREFIX):
                    bar.draw(message)
            cursor = page.cursor
            if not page.has_more:
                break
        if ended:
            bar.close()
            return
