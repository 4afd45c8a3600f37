"""Progress of a long run: log lines with sane rates, or a rich bar with counts, rate and ETA."""
from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from neural_ingest.transforms.counters import Progress, describe


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = _Clock()
    monkeypatch.setattr(Progress, "clock", c)
    monkeypatch.setattr(Progress, "display", "log")
    yield c
    Progress.reset()


def test_no_rate_over_no_time_and_the_first_line_waits_for_the_interval(clock, caplog):
    """Today the first add printed at once, at elapsed 1e-9 s: "32000000000.0/s"."""
    caplog.set_level(logging.INFO, logger="neural_ingest.progress")
    Progress.begin()
    Progress.add("encoded[embedding]", 32, every=10)  # the first batch, at the very start
    assert caplog.messages == []
    clock.now += 0.5
    assert "/s" not in describe({"encoded": 32}, 0.5)
    clock.now += 10
    Progress.add("encoded[embedding]", 32, every=10)
    assert caplog.messages == ["progress: encoded[embedding] 64, 6.1/s"]


def test_a_worker_that_did_not_see_begin_starts_its_clock_at_its_first_record(clock, caplog):
    caplog.set_level(logging.INFO, logger="neural_ingest.progress")
    Progress.reset()
    Progress.add("indexed", 500, every=10)
    assert caplog.messages == []  # not "500 (500000000000.0/s)"


def test_known_total_gives_percent_and_eta():
    assert describe({"indexed": 100}, 10.0, total=300) == "indexed 100/300 (33%), 10.0/s, ETA 20 s"


def test_quiet_shows_nothing(clock, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="neural_ingest.progress")
    monkeypatch.setattr(Progress, "display", "off")
    Progress.begin()
    clock.now += 100
    Progress.add("indexed", 5, every=1)
    assert caplog.messages == []


def test_terminal_bar_has_counts_rate_and_eta(clock, monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(Progress, "display", "bar")
    monkeypatch.setattr(Progress, "console", Console(file=out, force_terminal=True, width=150))
    Progress.begin(total=300)
    Progress.add("indexed", 100, every=10)
    Progress.end()
    Progress.begin()
    Progress.add("encoded[embedding]", 7, every=10)  # brackets are not rich markup
    Progress.end()
    text = out.getvalue()
    assert "indexed" in text and "100/300" in text and "ETA" in text and "encoded[embedding]" in text
    assert "0000000" not in text  # no rate over ~0 s
