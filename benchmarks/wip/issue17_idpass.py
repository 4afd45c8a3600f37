"""Peak RSS of the id pass alone (issue 17 scratch): `python issue17_idpass.py CORPUS group|combine`.
group: the old GroupByKey of (id, position) pairs; combine: CountAndLastPosition per id (this branch)."""
import sys

import apache_beam as beam

from neural_ingest.config import SourceConfig
from neural_ingest.transforms.prepare import IdPositions
from neural_ingest.transforms.read import ReadRecords

path, how = sys.argv[1], sys.argv[2]
cfg = SourceConfig(type="jsonl", path=path, id_field="id", text_fields=["title", "body"], metadata_fields=["topic"])


def dups(kv):
    where = list(kv[1])
    if len(where) > 1:
        yield kv[0], (len(where), max(where))


with beam.Pipeline("DirectRunner") as p:
    pairs = p | IdPositions(cfg, ReadRecords(cfg))
    if how == "group":
        d = pairs | beam.GroupByKey() | beam.FlatMap(dups)
    else:
        from neural_ingest.transforms.prepare import CountAndLastPosition
        d = pairs | beam.CombinePerKey(CountAndLastPosition()) | beam.Filter(lambda kv: kv[1][0] > 1)
    d | beam.combiners.Count.Globally() | beam.Map(lambda n: print("duplicate ids:", n))
