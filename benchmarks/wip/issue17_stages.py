"""Scratch for issue 17: print the DirectRunner's (FnApiRunner's) fused stages of `neural-ingest run` for a config.

A PCollection that crosses a stage boundary (a GroupByKey, a multi-input Flatten, a side input consumed
in its producer's stage) is held in memory by the local runner: the documents must stay inside one stage
from read to write. Usage: python benchmarks/wip/issue17_stages.py CONFIG [overrides...]
"""
import sys

import apache_beam as beam
from apache_beam.portability import common_urns
from apache_beam.runners.portability.fn_api_runner import translations

from neural_ingest.config import load_config
from neural_ingest.pipelines.ingest import REPLACE, build_ingest, prepare

cfg = load_config(sys.argv[1], sys.argv[2:])
p = beam.Pipeline("DirectRunner")
build_ingest(p, cfg, prepare(cfg, REPLACE), "r")
t = translations
phases = [t.annotate_downstream_side_inputs, t.fix_side_input_pcoll_coders, t.pack_combiners, t.lift_combiners, t.expand_sdf,
          t.expand_gbk, t.sink_flattens, t.greedily_fuse, t.read_to_impulse, t.impulse_to_input, t.sort_stages]
known = frozenset([common_urns.primitives.FLATTEN.urn, common_urns.primitives.GROUP_BY_KEY.urn])
for st in t.create_and_optimize_stages(p.to_runner_api(), phases=phases, known_runner_urns=known)[1]:
    print("STAGE", st.name[:120], "| side inputs:", len(list(st.side_inputs())))
    for tr in st.transforms:
        if tr.unique_name.endswith(("/Read", "/Write")) or "/Write/" in tr.unique_name or "KeepLast" in tr.unique_name:
            print("    ", tr.unique_name[:150])
