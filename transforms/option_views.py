"""A cache of Beam's PipelineOptions views, to cut a run's fixed cost.

``PipelineOptions.view_as(cls)`` builds a new argparse parser for ``cls``'s options and parses the flags
again at every call, and Beam calls it several times for each transform it applies (type checks, result
types): ~300 parsers a run, ~20% of the fixed cost of a local run once the DoFn inspection is cached
(profiled). A view holds nothing of its own: it reads and writes the options' shared ``_all_options`` dict,
parsed from the same flags, so the view made by the first call for a class serves the later ones.
"""
from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

_views: weakref.WeakKeyDictionary[Any, dict[type, Any]] = weakref.WeakKeyDictionary()
_original = PipelineOptions.view_as


def cached_view_as(self: Any, cls: type) -> Any:
    """``PipelineOptions.view_as``, made once per options object and class (while the flags and the shared
    options dict are those it was made from)."""
    try:
        views = _views.setdefault(self, {})
    except TypeError:  # not weak-referenceable: as Beam does
        return _original(self, cls)
    view = views.get(cls)
    state = self.__dict__
    if (
        view is None
        or view.__dict__.get("_all_options") is not state.get("_all_options")
        or view.__dict__.get("_flags") is not state.get("_flags")
    ):
        view = views[cls] = _original(self, cls)
    return view


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """``PipelineOptions.view_as`` cached while the block runs (neural-ingest's own build and run), Beam's own
    method again after it: a user's pipeline in the same process is never run with a patched Beam."""
    previous = PipelineOptions.view_as
    PipelineOptions.view_as = cached_view_as  # type: ignore[method-assign]
    try:
        yield
    finally:
        PipelineOptions.view_as = previous  # type: ignore[method-assign]
