"""neural_ingest.beam_memo: Beam's per-ParDo DoFn inspection, memoised per class, gives Beam's own answers."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from neural_ingest import beam_memo
from neural_ingest.local_runner import runner_for


class Plain(beam.DoFn):
    def process(self, x):
        yield x


class Counting(beam.DoFn):
    """Stateful: numbers the elements of each key."""

    SEEN = ReadModifyWriteStateSpec("seen", VarIntCoder())

    def process(self, kv, seen=beam.DoFn.StateParam(SEEN)):
        n = (seen.read() or 0) + 1
        seen.write(n)
        yield kv[0], n


class Borrowing(beam.DoFn):
    """Its process is another DoFn's bound method, set on the instance: never answered from the class."""

    def __init__(self, other: beam.DoFn):
        self.process = other.process


def test_memo_answers_as_beam_does_and_is_installed():
    assert userstate.get_dofn_specs is beam_memo.get_dofn_specs
    original = beam_memo._ORIGINAL
    for fn in (Plain(), Counting(), Plain(), Counting(), Borrowing(Counting()), Borrowing(Plain())):
        assert beam_memo.get_dofn_specs(fn) == original(fn)
    assert userstate.is_stateful_dofn(Counting()) and userstate.is_stateful_dofn(Borrowing(Counting()))
    assert not userstate.is_stateful_dofn(Plain()) and not userstate.is_stateful_dofn(Borrowing(Plain()))
    specs = beam_memo.get_dofn_specs(Counting())
    specs[0].clear()  # a caller's change does not reach the memo
    assert beam_memo.get_dofn_specs(Counting()) == original(Counting())


def test_a_stateful_dofn_still_runs_with_its_state():
    with beam.Pipeline(runner=runner_for("DirectRunner")) as p:
        out = p | beam.Create([("a", 1), ("a", 2), ("b", 3)]) | beam.ParDo(Counting())
        assert_that(out, equal_to([("a", 1), ("a", 2), ("b", 1)]))
