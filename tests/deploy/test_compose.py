"""deploy/docker-compose.yml: valid against the Compose Specification's JSON schema (the copy that
check-jsonschema ships, from github.com/compose-spec/compose-spec schema/compose-spec.json), and the
OpenSearch it runs is the version the project tests (scripts/opensearch-local.sh, scripts/test.sh)."""
from __future__ import annotations

import json
import os
import re
from importlib import resources

import pytest
import yaml
from support import ROOT

COMPOSE = ROOT / "deploy" / "docker-compose.yml"


def _schema() -> dict:
    if os.environ.get("CI") != "true":  # the test extra has it; under CI=true its absence is a failure
        pytest.importorskip(
            "check_jsonschema", reason="pip install check-jsonschema (the test extra): it ships the compose schema"
        )
    return json.loads(resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())


def test_compose_file_matches_the_compose_schema():
    import jsonschema

    schema = _schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(yaml.safe_load(COMPOSE.read_text()))
    ]
    assert not errors, errors
    # the schema does reject what Compose rejects
    assert list(validator.iter_errors({"services": {"x": {"image": "i", "ports": "9200"}}}))


def test_opensearch_version_is_the_tested_one():
    compose = yaml.safe_load(COMPOSE.read_text())
    image = compose["services"]["opensearch"]["image"]
    tested = re.search(
        r'VERSION="\$\{OPENSEARCH_VERSION:-([0-9.]+)\}"', (ROOT / "scripts" / "opensearch-local.sh").read_text()
    ).group(1)
    assert image == f"opensearchproject/opensearch:{tested}"
    assert f'node test "${{NEURAL_INGEST_TEST_PORT:-9250}}" {tested} all' in (ROOT / "scripts" / "test.sh").read_text()
