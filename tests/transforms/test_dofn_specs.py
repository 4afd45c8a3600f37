"""The per-class cache of Beam's DoFn state/timer inspection answers as Beam's own inspection does."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.transforms import core, userstate

from neural_ingest.transforms import dofn_specs

COUNT = userstate.ReadModifyWriteStateSpec("count", VarIntCoder())
TIMER = userstate.TimerSpec("t", userstate.TimeDomain.WATERMARK)
COUNT_PARAM = beam.DoFn.StateParam(COUNT)
TIMER_PARAM = beam.DoFn.TimerParam(TIMER)


class Stateful(beam.DoFn):
    def process(self, kv, count=COUNT_PARAM, t=TIMER_PARAM):
        yield kv

    @userstate.on_timer(TIMER)
    def fire(self):
        pass


class Plain(beam.DoFn):
    def process(self, x):
        yield x


class Holder:
    def step(self, x, count=COUNT_PARAM):
        return [x]


def test_cached_specs_equal_beams_own_for_each_kind_of_dofn():
    with dofn_specs.installed():
        assert userstate.get_dofn_specs is dofn_specs.cached_dofn_specs
        fns = [Stateful(), Stateful(), Plain(), core.CallableWrapperDoFn(lambda x: [x]), core.CallableWrapperDoFn(Holder().step)]
        for fn in fns:
            assert dofn_specs.cached_dofn_specs(fn) == dofn_specs._original(fn)
        assert dofn_specs.cached_dofn_specs(Stateful()) == ({COUNT}, {TIMER})  # still stateful, from the cache
        assert userstate.is_stateful_dofn(Stateful()) and not userstate.is_stateful_dofn(Plain())
        assert dofn_specs.cached_dofn_specs(core.CallableWrapperDoFn(Holder().step)) == ({COUNT}, set())  # never cached
    assert userstate.get_dofn_specs is dofn_specs._original  # Beam's own again: a user's pipeline is not patched


def test_importing_the_library_leaves_beam_unpatched():
    import importlib

    from apache_beam.options.pipeline_options import PipelineOptions

    from neural_ingest.transforms import option_views

    importlib.import_module("neural_ingest.pipelines.ingest")
    importlib.import_module("neural_ingest.beam")
    assert userstate.get_dofn_specs is dofn_specs._original
    assert PipelineOptions.view_as is option_views._original
