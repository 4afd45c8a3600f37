"""A reindex night measures recall from the live index's probes (sinks/recall_probes.py), against the real OpenSearch:
the exact answers it carries forward are what an exhaustive search of the new index finds, so its recall@k is the
full check's for the same queries, while only the night's writes are searched exhaustively."""
from __future__ import annotations

from support import synthetic_docs, write_jsonl

from neural_ingest.pipelines.reindex import reindex
from neural_ingest.sinks import recall as rc
from neural_ingest.sinks import recall_probes as rp


def test_merge_is_exact_down_to_the_higher_cut_off():
    kept = [("a", 0.9), ("c", 0.5)]  # the live list, complete above 0.4, with b rewritten and dropped
    written = [("b", 0.7), ("d", 0.45)]  # the night's writes, complete above 0.45
    hits, bound = rp.merge(kept, 0.4, written, 0.45, depth=10)
    assert hits == [("a", 0.9), ("b", 0.7), ("c", 0.5), ("d", 0.45)] and bound == 0.45
    hits, bound = rp.merge(kept, 0.4, written, None, depth=2)  # cut to depth: complete above the last kept score
    assert hits == [("a", 0.9), ("b", 0.7)] and bound == 0.7
    # below the higher cut-off a document may be missing: not claimed
    assert rp.merge([("a", 0.9), ("c", 0.3)], 0.2, [("b", 0.8)], 0.6, depth=10) == ([("a", 0.9), ("b", 0.8)], 0.6)
    assert rp.merge([("a", 0.9)], None, [], None, depth=10) == ([("a", 0.9)], None)  # every document listed


def _config(make_config, index_name, tmp_path, docs, name):
    return make_config(source_path=write_jsonl(tmp_path / name, docs), sink="opensearch", index=index_name, overrides={
        "encoder": {"type": "hash", "dimension": 8},
        "sink.recall.sample_queries": 40,
        "reindex": {"keep_last": 2, "lock_ttl": 30, "lock_index": f"{index_name}-locks"}})


def _assert_exact(client, store, index, settings) -> rc.Probes:
    """The stored probes of ``index`` list, for every query, what an exhaustive search of it finds now."""
    probes, _, why = rp.load(client, store, index, settings)
    assert probes is not None, why
    for name, f in probes.fields.items():
        full = rc.msearch_hits(client, index, [rc.exact_query(name, v, probes.depth, f.space_type) for v in f.vectors])
        for q, (known, truth) in enumerate(zip(f.exact, full)):
            assert len(known) >= probes.k, q
            assert [i for i, _ in known] == [i for i, _ in truth[:len(known)]], q
    return probes


def test_a_night_carries_the_exact_answers_and_reports_the_full_checks_recall(os_client, make_config, index_name, tmp_path):
    docs = synthetic_docs(400, prefix="p")
    first = reindex(_config(make_config, index_name, tmp_path, docs, "a.jsonl"))
    store, cfg = f"{index_name}-locks", _config(make_config, index_name, tmp_path, docs, "a.jsonl")
    settings = rp.settings_hash(cfg.sink, first.plan.model_hash)
    assert "carried_from" not in first.summary.recall and first.summary.recall["queries"] == 40
    _assert_exact(os_client, store, first.plan.new_index, settings)

    # 30 texts changed, 10 documents gone, 20 new: 50 written, searched exhaustively; nothing else is
    night_docs = [{**d, "body": f"Rewritten {i}."} if i < 30 else d for i, d in enumerate(docs[:-10])]
    night_docs += synthetic_docs(20, prefix="n")
    night = reindex(_config(make_config, index_name, tmp_path, night_docs, "b.jsonl"))
    r = night.summary.recall
    assert night.status == "swapped" and night.summary.encoded == 50
    assert r["carried_from"] == {"index": first.plan.new_index, "written_searched": 50, "searched_in_full": 0}
    probes = _assert_exact(os_client, store, night.plan.new_index, settings)
    assert os_client.exists(index=store, id=rp.record_id(first.plan.new_index)) is False  # the live index's probes go with it
    name, f = next(iter(probes.fields.items()))
    full, _ = rc.probe(os_client, night.plan.new_index, name, f.vectors, probes.k, f.space_type, probes.depth)
    assert r["recall_at_k"] == round(full, 4) and r["queries"] == 40

    # most documents gone: many queries lose their known top k and are searched in full again, still exact
    few = night_docs[::4]
    last = reindex(_config(make_config, index_name, tmp_path, few, "c.jsonl"), allow_shrink=True)
    assert last.status == "swapped" and last.summary.recall["carried_from"]["searched_in_full"] > 0
    _assert_exact(os_client, store, last.plan.new_index, settings)


def test_stale_probes_are_not_used(os_client, make_config, index_name, tmp_path):
    docs = synthetic_docs(60, prefix="q")
    first = reindex(_config(make_config, index_name, tmp_path, docs, "a.jsonl"))
    os_client.index(index=first.plan.new_index, id="intruder", body={"text": "written by someone else"}, refresh=True)
    changed = [{**docs[0], "body": "Tides follow the moon."}, *docs[1:]]
    said: list[str] = []
    night = reindex(_config(make_config, index_name, tmp_path, changed, "b.jsonl"), echo=said.append)
    assert any("measured in full (the recall probes of" in s and "are stale (count changed)" in s for s in said), said
    assert "carried_from" not in night.summary.recall and night.summary.recall["recall_at_k"] is not None
