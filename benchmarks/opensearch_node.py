"""The OpenSearch node the throughput run measures against: ``--opensearch-url``, or a local one it starts.

A started node (scripts/opensearch-local.sh, name ``bench``, k-NN plugin, 1 GiB heap) is stopped at the
end unless ``--keep-opensearch``; one that cannot start puts ``opensearch`` in ``skipped`` with the reason.
"""
from __future__ import annotations

import subprocess
from typing import Any

from benchmarks.common import ROOT
from benchmarks.harness import Bench, log

SCRIPT = ROOT / "scripts" / "opensearch-local.sh"
NAME = "bench"


def client(url: str | None) -> Any:
    """A client with a long timeout (bulk loads and force-merges of a whole corpus)."""
    from opensearchpy import OpenSearch

    return OpenSearch(hosts=[url], timeout=120)


def start(bench: Bench) -> None:
    """Set ``bench.os_url`` to a node that answers yellow, or record why there is none."""
    if "opensearch" in bench.skip:
        bench.skipped["opensearch"] = "--skip opensearch"
        return
    if bench.args.opensearch_url:
        bench.os_url = bench.args.opensearch_url
        client(bench.os_url).cluster.health(wait_for_status="yellow", request_timeout=60)
        return
    port = str(bench.args.opensearch_port)
    status = subprocess.run(["bash", str(SCRIPT), "status", "--name", NAME], capture_output=True, text=True, check=False)
    if status.returncode != 0:
        log(f"starting OpenSearch instance {NAME} on port {port} (scripts/opensearch-local.sh)")
        r = subprocess.run(
            ["bash", str(SCRIPT), "start", "--name", NAME, "--port", port, "--plugins", "knn", "--heap", "1g"],
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            bench.skipped["opensearch"] = f"could not start OpenSearch: {(r.stderr or r.stdout)[-500:]}"
            log(bench.skipped["opensearch"])
            return
        bench.os_started = True
    bench.os_url = subprocess.run(
        ["bash", str(SCRIPT), "url", "--name", NAME], capture_output=True, text=True, check=False
    ).stdout.strip()
    # opensearch-py 3 reads an API call's `timeout` as the client's request timeout (a number), so the
    # server-side wait keeps its default (30 s) and the client waits a little longer.
    client(bench.os_url).cluster.health(wait_for_status="yellow", request_timeout=60)


def stop(bench: Bench) -> None:
    """Stop the node this run started (not one it was given), unless --keep-opensearch."""
    if bench.os_started and not bench.args.keep_opensearch:
        subprocess.run(["bash", str(SCRIPT), "stop", "--name", NAME], capture_output=True, check=False)
