"""The clone path's classification (transforms/reuse.py): only small (id, digests) tuples are joined, and
each id gets the action its last source copy and the live stamp call for."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from neural_ingest.records import Document
from neural_ingest.transforms.reuse import ENCODE, LIVE, SRC, VECTORS, JoinStampsFn, _digests, classify


def _src(doc: Document, position) -> tuple:
    return doc.id, (SRC, position, *_digests(doc))


def _live(doc: Document, same_model: bool = True) -> tuple:
    return doc.id, (LIVE, *_digests(doc), same_model)


def test_each_id_gets_the_action_of_its_last_source_copy_against_the_live_stamp():
    old = Document(id="a", text="old text", metadata={"topic": "x"})
    same = Document(id="u", text="same", metadata={"topic": "x"})
    meta_old, meta_new = Document(id="m", text="t", metadata={"topic": "x"}), Document(id="m", text="t", metadata={"topic": "y"})
    changed = Document(id="a", text="new text", metadata={"topic": "x"})
    other_model = Document(id="o", text="o", metadata={})
    new, gone = Document(id="n", text="n", metadata={}), Document(id="g", text="g", metadata={})
    pairs = [
        _live(old), _src(old, ("f", 10)), _src(changed, ("f", 90)),  # a duplicate id: the later copy decides
        _live(same), _src(same, ("f", 20)),
        _live(meta_old), _src(meta_new, ("f", 30)),
        _live(other_model, same_model=False), _src(other_model, ("f", 40)),
        _src(new, ("f", 50)), _live(gone),
    ]
    with TestPipeline() as p:
        out = p | beam.Create(pairs) | beam.CombinePerKey(JoinStampsFn()) | beam.FlatMap(classify)
        assert_that(out, equal_to([
            ("a", (ENCODE, True)), ("m", (VECTORS, True)), ("o", (ENCODE, True)), ("n", (ENCODE, False)), ("g", (None, True)),
        ]))


def test_the_last_copy_wins_whatever_order_the_accumulators_merge_in():
    fn = JoinStampsFn()
    first, last = (("f", 1), "c1", "d1"), (("f", 2), "c2", "d2")
    for order in ([first, last], [last, first]):
        accs = [fn.add_input(fn.create_accumulator(), (SRC, *v)) for v in order]
        accs.append(fn.add_input(fn.create_accumulator(), (LIVE, "c2", "d2", True)))
        src, live = fn.extract_output(fn.merge_accumulators(accs))
        assert src == last and live == ("c2", "d2", True)
    assert list(classify(("x", (last, ("c2", "d2", True))))) == []  # unchanged: nothing to write
