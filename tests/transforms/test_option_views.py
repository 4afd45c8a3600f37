"""Cached PipelineOptions views read and write the options as Beam's own views do."""
from __future__ import annotations

import pickle

from apache_beam.options.pipeline_options import (
    PipelineOptions,
    StandardOptions,
    TypeOptions,
)

from neural_ingest.transforms import option_views


def test_cached_views_share_the_options_and_see_every_change():
    with option_views.installed():
        opts = PipelineOptions(["--runner", "DirectRunner", "--type_check_strictness", "ALL_REQUIRED"])
        first, again = opts.view_as(TypeOptions), opts.view_as(TypeOptions)
        assert first is again  # made once
        assert again.type_check_strictness == option_views._original(opts, TypeOptions).type_check_strictness == "ALL_REQUIRED"
        opts.view_as(StandardOptions).streaming = True  # a write through one view ...
        assert opts.view_as(StandardOptions).streaming  # ... seen by all
        assert option_views._original(opts, StandardOptions).streaming
        opts._all_options = dict(opts._all_options, streaming=False)  # the shared dict replaced: a fresh view
        assert opts.view_as(StandardOptions).streaming is False
        copy = pickle.loads(pickle.dumps(opts))  # the cache is not part of the options
        assert copy.view_as(StandardOptions).runner == "DirectRunner"
        assert PipelineOptions([]).view_as(StandardOptions).streaming is False  # another options object: its own views
    assert PipelineOptions.view_as is option_views._original  # Beam's own again after the block
