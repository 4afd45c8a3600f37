"""`neural-ingest search`: a query encoded by the pipeline's own model, against the configured sink."""
from __future__ import annotations

import json

import click

from neural_ingest.cli.errors import UserError, load_config, user_errors

KNN_MAX_K = 10_000  # = neural_ingest.config.sinks.KNN_MAX_K (not imported: the CLI, and each shell completion, load fast)


@click.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.argument("query")
@click.option("-k", type=click.IntRange(min=1), default=10, show_default=True,
              help=f"Number of results, at least 1 (OpenSearch: at most {KNN_MAX_K:,}).")
@click.option("--json", "as_json", is_flag=True, help='Print [{"id", "score"}, ...], best first.')
@click.option(
    "--mode",
    type=click.Choice(["dense", "sparse", "hybrid"]),
    default=None,
    help="dense: k-NN; sparse: neural_sparse / rank_feature; hybrid: both, normalised and combined. "
    "Default: the first encoder's kind.",
)
@click.option(
    "--weights", "hybrid_weights", default=None, metavar="DENSE,SPARSE", help="Hybrid combination weights [0.5,0.5]."
)
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
def search(
    config: str, query: str, k: int, as_json: bool, mode: str | None, hybrid_weights: str | None, overrides: tuple[str, ...]
) -> None:
    """Search the configured sink with QUERY encoded by the pipeline's own model.

    A missing index, alias or dataset exits 2 with one line; no hits prints one line on stderr (and [] with
    --json) and exits 0."""
    from neural_ingest.search import no_hits_reason
    from neural_ingest.search import search as do_search

    cfg = load_config(config, overrides)
    if cfg.sink.type == "opensearch" and k > KNN_MAX_K:
        raise click.BadParameter(f"{k} is more than OpenSearch returns for one query ({KNN_MAX_K:,}): use -k {KNN_MAX_K} or less",
                                 param_hint="'-k'")
    search_mode = mode or str(getattr(cfg.encoders[0], "kind", "dense"))
    weights = hybrid_weights_option(hybrid_weights) if hybrid_weights else None
    with user_errors(ValueError):  # e.g. a mode the config's encoders cannot answer
        hits = do_search(cfg, query, k=k, mode=search_mode, weights=weights)
        if not hits:
            click.echo(f"no hits for {query!r}: {no_hits_reason(cfg, search_mode)}", err=True)
    if as_json:
        rows = []
        for h in hits:
            row = {"id": h.id, "score": round(h.score, 6)}
            if h.passage is not None:  # chunked index: the document's best chunk
                row["passage"] = {key: h.passage.get(key) for key in ("text", "start", "end", "index")}
            rows.append(row)
        click.echo(json.dumps(rows))
        return
    if not hits:
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text  # plain text: brackets in a document are not markup

    text_field = getattr(cfg.sink, "text_field", "text")
    t = Table(title=f"{query!r} on {cfg.sink.describe()}")
    for col in ("#", "id", "score", "text"):
        t.add_column(col)
    for i, h in enumerate(hits, 1):
        text = " ".join(str(h.source.get(text_field, "")).split())
        if h.passage is not None:  # chunked index: show the best passage, not the document's start
            text = f"(chunk {h.passage.get('index')}) " + " ".join(str(h.passage.get("text") or "").split())
        t.add_row(str(i), h.id, f"{h.score:.4f}", Text(text[:100] + ("…" if len(text) > 100 else "")))
    Console().print(t)


def hybrid_weights_option(text: str) -> tuple[float, float]:
    """--weights DENSE,SPARSE: two non-negative numbers, not both zero."""
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 2 or min(values) < 0 or sum(values) <= 0:
        raise UserError(f"--weights {text!r}: expected two non-negative numbers DENSE,SPARSE, e.g. 0.3,0.7")
    return values[0], values[1]
