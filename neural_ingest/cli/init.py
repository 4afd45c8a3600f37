"""`neural-ingest init`: a commented starter config for a chosen sink and model, valid as written.

The text is written by hand (a YAML dump has no comments); tests/neural_ingest/test_cli_init.py loads
every variant through the config's own validation, so a renamed field fails there, not for a user.
"""
from __future__ import annotations

import re
from pathlib import Path

import click

from neural_ingest.cli.errors import UserError

SINKS = ("parquet", "opensearch", "hybrid")
DEFAULT_MODEL = "huggingface/sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_SPARSE_MODEL = "amazon/neural-sparse/opensearch-neural-sparse-encoding-doc-v1"
DEFAULT_SOURCE = "data/sample/docs.jsonl"
_SOURCE_TYPES = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}


def _yaml(value: str) -> str:
    """A string as a YAML scalar: plain when YAML reads it back unchanged (a model name, a path), else double-quoted
    by YAML itself: `0`, `null`, `yes`, `: `, ` #`, newlines and any other character stay text."""
    import yaml

    if re.fullmatch(r"[A-Za-z0-9_./][A-Za-z0-9_./~@+:-]*", value):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return str(yaml.safe_dump(value, default_style='"', allow_unicode=True, width=1 << 30)).rstrip("\n")  # YAML's own escapes


def _source_type(path: str) -> str:
    for suffix, kind in _SOURCE_TYPES.items():
        if path.lower().endswith(suffix):
            return kind
    raise UserError(f"--source {path}: cannot tell the format from its name: use a path ending in {', '.join(_SOURCE_TYPES)}")


def _check_model(option: str, name: str, kind: str) -> None:
    """A catalogue name of the other kind is a mistake to catch now; other names (a directory, a model of
    one's own) are checked by `validate`, which loads them."""
    from neural_ingest.catalogue import lookup

    entry = lookup(name)
    if entry is not None and entry.kind != kind:
        other = "--sparse-model" if kind == "dense" else "--model"
        raise UserError(f"{option} {name}: a {entry.kind} model; give it with {other}, and a {kind} model here "
                         "(`neural-ingest models list`)")


def starter_config(sink: str, model: str = DEFAULT_MODEL, sparse_model: str = DEFAULT_SPARSE_MODEL,
                   source: str = DEFAULT_SOURCE, index: str = "docs") -> str:
    """The commented YAML `init` writes."""
    if sink not in SINKS:
        raise ValueError(f"sink {sink!r}: expected one of {', '.join(SINKS)}")
    header = f"""\
# neural-ingest starter config (`neural-ingest init --sink {sink}`). Every field is explained; see README.md,
# "Configuration". ${{NAME}} and ${{NAME:-default}} are read from the environment when the file is loaded,
# so hosts and secrets stay out of this file. Next:
#   neural-ingest validate CONFIG                 # the config, the model{"" if sink == "parquet" else ", the cluster"}; encodes nothing
#   neural-ingest run CONFIG --summary out/summary.json
#   neural-ingest search CONFIG "a question"{" --mode hybrid" if sink == "hybrid" else ""}
run:
  name: starter                     # shown in the summary and in run ids
  max_failed_ratio: 0.01            # error budget: the run fails (exit 3) when more than 1% of records fail
source:
  type: {_source_type(source)}                       # jsonl | csv | parquet | text
  path: {_yaml(source)}   # a file or a glob, relative to where you run neural-ingest (gs:// s3:// with Beam's extras)
  id_field: id                      # null: an id from a hash of the content, so reruns overwrite instead of duplicating
  text_fields: [title, body]        # the fields joined into the text that is embedded: use your records' own
  metadata_fields: []               # fields stored beside the vectors as they are, e.g. [topic, year]
"""
    dense = f"""\
  type: sentence_transformers       # a local model, run on the workers (no service, no hub: weights from disk)
  model: {_yaml(model)}   # a catalogue name (`neural-ingest models list`) or a model directory
  device: auto                      # cpu | cuda | auto
  batch_size: 32                    # documents per encode call
"""
    if sink == "hybrid":
        encoders = f"""\
encoders:                           # dense + sparse: one read of the source, both fields in one index
  - type: sentence_transformers     # field: embedding (knn_vector)
    model: {_yaml(model)}   # a catalogue name (`neural-ingest models list`) or a model directory
    device: auto                    # cpu | cuda | auto
    batch_size: 32                  # documents per encode call
  - type: neural_sparse             # field: sparse_embedding (rank_features)
    model: {_yaml(sparse_model)}   # weights from local disk only: $NEURAL_INGEST_MODELS, the Hugging Face cache or model_path (README)
    device: auto                    # cpu | cuda | auto
    batch_size: 8                   # masked-LM logits are batch x tokens x vocabulary: keep it small
    prune: {{type: max_ratio, ratio: 0.1}}   # drop tokens below 10% of the top weight: none | top_k | max_ratio | alpha_mass | abs_value
"""
    else:
        encoders = (
            "encoder:                            # the model that embeds every document (and each query of `search`)\n" + dense
        )
    if sink == "parquet":
        sink_text = """\
sink:
  type: parquet                     # a local Parquet dataset that `neural-ingest search` queries; no cluster needed
  path: .neural-ingest/dataset      # the dataset directory, replaced atomically by each run
"""
    else:
        sink_text = f"""\
sink:
  type: opensearch                  # a k-NN index on a cluster (or parquet: a local dataset)
  hosts: ["${{OPENSEARCH_URL:-http://127.0.0.1:9200}}"]   # export OPENSEARCH_URL=https://search.example.com:9200 for another node
  index: {_yaml(index)}                       # created with a mapping derived from the model when it does not exist
  username: ${{OPENSEARCH_USER:-}}    # empty: no authentication
  password: ${{OPENSEARCH_PASSWORD:-}}   # a secret: from the environment, masked in every log and summary
  verify_certs: true                # keep on; for a private CA set ca_certs: /path/to/ca.pem
  knn: {{engine: null, ef_search: 100}}   # engine null: faiss where the nodes have it, else lucene; 100 candidates per query
  bulk: {{max_docs: 500, max_bytes: 5242880}}   # one bulk request holds at most 500 documents and 5 MiB
"""
    tail = """\
dead_letter:
  path: .neural-ingest/dead-letters   # records that fail, with the reason, to fix and `neural-ingest dlq replay`
"""
    return header + encoders + sink_text + tail


@click.command("init")
@click.option(
    "--sink",
    "sink",
    type=click.Choice(SINKS),
    default="parquet",
    show_default=True,
    help="parquet: a local dataset; opensearch: a k-NN index; hybrid: dense + neural sparse in one index.",
)
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Dense model: a catalogue name or a directory.")
@click.option("--sparse-model", default=DEFAULT_SPARSE_MODEL, show_default=True, help="Sparse model (--sink hybrid).")
@click.option("--source", default=DEFAULT_SOURCE, show_default=True, help="Source file or glob; its extension gives the format.")
@click.option("--index", default="docs", show_default=True, help="OpenSearch index (--sink opensearch / hybrid).")
@click.option(
    "-o",
    "--output",
    default="neural-ingest.yaml",
    show_default=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Where to write the config; - prints it.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(sink: str, model: str, sparse_model: str, source: str, index: str, output: str, force: bool) -> None:
    """Write a commented starter config for SINK and MODEL, valid as written (then: neural-ingest validate)."""
    import yaml

    from neural_ingest.config import ConfigError, interpolate_env, parse_config

    _check_model("--model", model, "dense")
    if sink == "hybrid":
        _check_model("--sparse-model", sparse_model, "sparse")
    text = starter_config(sink, model, sparse_model, source, index)
    try:  # what is written must load: a bad --index, say, is said now, naming the option
        parse_config(interpolate_env(yaml.safe_load(text)))
    except ConfigError as e:
        raise UserError(f"the options give an invalid config: {' '.join(str(e).split())}") from None
    if output == "-":
        click.echo(text, nl=False)
        return
    path = Path(output)
    if path.exists() and not force:
        raise UserError(f"{path} exists: pass --force to overwrite it, or choose another path with -o")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {path} (sink {sink}); next: neural-ingest validate {path}")
