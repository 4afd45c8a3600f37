"""The README's examples hold as written: every config with an OpenSearch host follows OPENSEARCH_URL, the README's
config block loads, and no command line asks the DirectRunner for workers it would not use."""
from __future__ import annotations

import re

import pytest
import yaml
from support import ROOT

from neural_ingest.config import load_config, parse_config

README = (ROOT / "README.md").read_text()
NODE = "http://10.1.2.3:9250"


def _opensearch_hosts(cfg) -> list[list[str]]:
    """Every host list / URL in a config that names an OpenSearch node: the sink, an index source, an ML Commons encoder."""
    out = [list(part.hosts) for part in (cfg.sink, cfg.source) if getattr(part, "type", None) == "opensearch"]
    return out + [[e.url] for e in cfg.encoders if e.type == "opensearch_ml"]


def test_every_config_with_an_opensearch_host_reads_opensearch_url(monkeypatch):
    monkeypatch.setenv("OPENSEARCH_URL", NODE)
    monkeypatch.setenv("ML_MODEL_ID", "m")  # required by remote-opensearch-ml.yaml
    monkeypatch.setenv("EMBEDDINGS_API_KEY", "k")  # required by remote-openai.yaml
    found = {}
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        hosts = _opensearch_hosts(load_config(path))
        if hosts:
            found[path.name] = hosts
    assert len(found) >= 7, found  # all but quickstart.yaml (Parquet)
    assert all(h == [NODE] for hosts in found.values() for h in hosts), found
    monkeypatch.delenv("OPENSEARCH_URL")
    assert _opensearch_hosts(load_config(ROOT / "configs" / "opensearch.yaml")) == [["http://127.0.0.1:9200"]]


def test_the_readme_config_block_loads_as_written(monkeypatch):
    from neural_ingest.config.loading import interpolate_env

    block = README[README.index("## Configuration"):]
    text = block[block.index("```yaml\n") + 8:block.index("```", block.index("```yaml\n") + 8)]
    monkeypatch.setenv("OPENSEARCH_PASSWORD", "secret")
    monkeypatch.setenv("OPENSEARCH_URL", NODE)
    cfg = parse_config(interpolate_env(yaml.safe_load(text)))
    assert cfg.sink.hosts == [NODE] and cfg.sink.index == "docs"


@pytest.mark.parametrize("doc", ["README.md", *sorted(p.name for p in (ROOT / "docs").glob("*.md"))])
def test_direct_num_workers_always_comes_with_a_running_mode(doc):
    """Alone, --direct_num_workers runs one in-memory worker and Beam only warns (README, "Using it")."""
    text = (ROOT / doc if doc == "README.md" else ROOT / "docs" / doc).read_text()
    code = "\n".join(re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.DOTALL))  # the command lines, not the prose
    commands = [line for line in code.splitlines() if re.search(r"--direct_num_workers[ =]\d", line)]
    assert all(re.search(r"--direct_running_mode[ =]multi_(processing|threading)", line) for line in commands), commands
