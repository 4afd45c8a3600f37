"""A real-text benchmark corpus built on the spot from the Python standard library's docstrings.

No download and nothing large in the repository: every Python installation carries a few thousand
docstrings written by people for people (module overviews, class and function documentation), under
the Python Software Foundation License. They are parsed with :mod:`ast` (nothing is imported or run),
cleaned (doctest lines dropped), kept when 20-600 words long, deduplicated, and ordered by a hash of
their text, so the same Python version always gives the same corpus. Lengths vary the way real
documentation does: many short paragraphs, a long tail of page-length module overviews (the longest
exceed all-MiniLM-L6-v2's 256-token window and are truncated, as in real corpora).

When the standard library alone has fewer documents than asked for, docstrings of installed packages
(``EXTRA_PACKAGES``: numpy, BSD-3-Clause; apache_beam, Apache-2.0) are added the same way.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
import statistics
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

MIN_WORDS = 20
MAX_WORDS = 600
SKIP_PARTS = {"test", "tests", "idlelib", "site-packages", "lib2to3", "turtledemo", "__pycache__", "ensurepip", "venv"}
EXTRA_PACKAGES = [("numpy", "BSD-3-Clause"), ("apache_beam", "Apache-2.0")]
STDLIB_LICENCE = "PSF-2.0 (Python Software Foundation License)"


@dataclass
class CorpusInfo:
    path: str
    documents: int
    sources: dict[str, int]
    licences: dict[str, str]
    python: str
    sha256: str
    words_mean: float
    words_median: float
    words_p90: float
    words_max: int

    def as_dict(self) -> dict:
        return asdict(self)


def _clean(doc: str) -> str:
    lines = [ln.rstrip() for ln in doc.splitlines() if not ln.lstrip().startswith((">>>", "... "))]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _docstrings(root: Path, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(qualified name, cleaned docstring) for every module, class, function and method under root."""
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in SKIP_PARTS for part in rel.parts):
            continue
        module = ".".join((prefix, *rel.with_suffix("").parts) if prefix else rel.with_suffix("").parts)
        module = module.removesuffix(".__init__")
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        stack: list[tuple[str, ast.AST]] = [(module, tree)]
        while stack:
            name, node = stack.pop()
            doc = ast.get_docstring(node)
            if doc:
                yield name, _clean(doc)
            for child in getattr(node, "body", []):
                if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    stack.append((f"{name}.{child.name}", child))


def _pool(n: int) -> tuple[list[dict], dict[str, int], dict[str, str]]:
    seen: set[str] = set()
    docs: list[dict] = []
    sources: dict[str, int] = {}
    licences: dict[str, str] = {}
    py = f"python-stdlib-{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    roots = [(py, Path(sysconfig.get_paths()["stdlib"]), "", STDLIB_LICENCE)]
    for pkg, licence in EXTRA_PACKAGES:
        try:
            mod = __import__(pkg)
        except ImportError:
            continue
        version = getattr(mod, "__version__", "?")
        roots.append((f"{pkg}-{version}", Path(mod.__file__).parent, pkg, licence))
    for source, root, prefix, licence in roots:
        if len(docs) >= n:
            break
        for name, text in _docstrings(root, prefix):
            words = len(text.split())
            if not MIN_WORDS <= words <= MAX_WORDS or text in seen:
                continue
            seen.add(text)
            docs.append({"title": name, "body": text, "source": source})
            sources[source] = sources.get(source, 0) + 1
            licences[source] = licence
    return docs, sources, licences


def build_corpus(n: int, cache_dir: str | Path) -> CorpusInfo:
    """Write (or reuse) ``<cache_dir>/corpus-<n>-<python>.jsonl``: records {id, text, title, source}."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    path = cache_dir / f"corpus-{n}-py{tag}.jsonl"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        return CorpusInfo(**json.loads(meta_path.read_text()))
    docs, _sources, licences = _pool(n)
    # A hash order mixes modules and lengths; stable for a given Python (and extra package) version.
    docs.sort(key=lambda d: hashlib.sha1((d["title"] + "\n" + d["body"]).encode()).hexdigest())
    docs = docs[:n]
    sources: dict[str, int] = {}
    lines = []
    for i, d in enumerate(docs):
        sources[d["source"]] = sources.get(d["source"], 0) + 1
        rec = {"id": f"doc-{i:05d}", "text": f"{d['title']}\n\n{d['body']}", "title": d["title"], "source": d["source"]}
        lines.append(json.dumps(rec, ensure_ascii=False))
    data = ("\n".join(lines) + "\n").encode("utf-8")
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    words = sorted(len(d["body"].split()) for d in docs)
    info = CorpusInfo(
        path=str(path),
        documents=len(docs),
        sources=sources,
        licences={k: v for k, v in licences.items() if k in sources},
        python=sys.version.split()[0],
        sha256=hashlib.sha256(data).hexdigest(),
        words_mean=round(statistics.mean(words), 1) if words else 0.0,
        words_median=float(statistics.median(words)) if words else 0.0,
        words_p90=float(words[int(0.9 * (len(words) - 1))]) if words else 0.0,
        words_max=words[-1] if words else 0,
    )
    meta_path.write_text(json.dumps(info.as_dict(), indent=2) + "\n")
    return info


def load_texts(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
