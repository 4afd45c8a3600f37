"""A per-class cache of Beam's DoFn state/timer inspection, to cut a run's fixed cost.

Beam asks ``userstate.get_dofn_specs`` for every DoFn many times while a pipeline is built, translated and
run (each ParDo's construction, ``to_runner_api``, and every bundle processor of the local runner), and
each call takes ``inspect.signature`` of every method of the DoFn: on a 20,000-document run that was
~0.3 s of CPU of a ~0.8 s fixed cost (profiled; 18,000 signatures). The state and timer specs a DoFn
declares are defaults of the methods Beam inspects: the attributes of the DoFn that are bound methods.
Those of its class are the same for every instance, so the result is cached per class; a DoFn with a
bound method set on the instance (a Map of a bound method: ``process`` is that method) is inspected
every time, as before. (A Map of a plain function sets ``process`` to that function, which Beam does not
inspect: its result is its class's.)
"""
from __future__ import annotations

import contextlib
import threading
import types
from collections.abc import Iterator
from typing import Any

from apache_beam.transforms import userstate

_lock = threading.Lock()
_cache: dict[type, tuple[frozenset[Any], frozenset[Any]]] = {}
_original = userstate.get_dofn_specs


def cached_dofn_specs(dofn: Any) -> tuple[set[Any], set[Any]]:
    """``userstate.get_dofn_specs`` of ``dofn``, from the cache for its class where that is the same thing."""
    cls = type(dofn)
    if any(isinstance(v, types.MethodType) for v in getattr(dofn, "__dict__", {}).values()):
        return _original(dofn)
    hit = _cache.get(cls)
    if hit is None:
        states, timers = _original(dofn)  # raises as before for a DoFn with duplicate parameters: nothing cached
        hit = (frozenset(states), frozenset(timers))
        with _lock:
            _cache[cls] = hit
    return set(hit[0]), set(hit[1])


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """Beam's calls (``userstate.get_dofn_specs`` is looked up on the module at each call) routed to the cache
    while the block runs (neural-ingest's own build and run), Beam's own function again after it: a user's
    pipeline in the same process (the Python API) is never run with a patched Beam."""
    previous = userstate.get_dofn_specs
    userstate.get_dofn_specs = cached_dofn_specs
    try:
        yield
    finally:
        userstate.get_dofn_specs = previous
