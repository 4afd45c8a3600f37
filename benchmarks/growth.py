"""Growth benchmark (issue 17 item 4, and item 3's Flink scale-out): time and peak memory per corpus size.

    python -m benchmarks.growth --sizes 10000,100000,1000000 --out benchmarks/results/ [--encoder tiny|hash]
        [--opensearch-url URL] [--skip parquet,opensearch,reindex,flink] [--runner flink --flink-parallelism 1,2]

Per size, each scenario is a real ``neural-ingest`` CLI subprocess, the way users run it:

- ``parquet``: ``neural-ingest run`` into Parquet (DirectRunner);
- ``opensearch``: ``neural-ingest run`` into a fresh OpenSearch index;
- ``reindex_full``: ``neural-ingest reindex`` building the alias from nothing (every document encoded);
- ``reindex_unchanged``: the next night on the same corpus;
- ``reindex_changed``: the night after, on the corpus with 1% of the documents' text changed;
- ``flink_p1``, ``flink_p2`` (``--runner flink``): ``neural-ingest run`` into Parquet on the standalone Flink
  cluster of scripts/flink-local.sh (2 task slots), Beam ``--parallelism`` 1 and 2.

Wall seconds are the subprocess's. Peak memory is sampled with psutil every ``--poll`` seconds: the summed RSS
of the CLI process and all its descendants (``peak_rss_tree_gib``), and, exact, the kernel's ru_maxrss of the
CLI process itself from wait4 (``peak_rss_main_gib``: what ``/usr/bin/time -v`` reports). On Flink each
cluster process is polled by role (JobManager, TaskManager, Beam job server, worker pool, SDK workers).
Counts come from the run's ``--summary`` JSON. Writes ``growth.json`` and ``growth.png`` into ``--out``.

Corpora are synthetic (200-1,500 character bodies of tokenizer words, ids d0..dN-1), cached under
``--cache-dir`` with the tiny random-weight BERT (hidden 32, one layer, MiniLM's tokenizer) the ``tiny``
encoder loads. ``hash`` is the benchmark-only encoder ``{type: hash, dimension: 384}`` (no model).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import ROOT, logger, machine_info, timed

SCHEMA = 1
TOKENIZER_MODEL = "huggingface/sentence-transformers/all-MiniLM-L6-v2"
SCENARIOS = ("parquet", "opensearch", "reindex_full", "reindex_unchanged", "reindex_changed")
RATIO_TARGET = 0.05  # an unchanged / 1%-changed night costs at most 5% of the full build (issue 17)
CHANGED_EVERY = 100  # 1% of the documents: ids d7, d107, d207, ... get a changed text
CHANGED_OFFSET = 7
GIB = 1024**3


log = logger("growth")


# --------------------------------------------------------------------------- corpora and model
def build_tiny_model(cache: Path) -> Path:
    """A random-weight BERT (hidden 32, one layer, mean pooling) with MiniLM's tokenizer: a model that costs
    almost nothing, so what is measured is the pipeline. Built once, deterministic (seed 0)."""
    out = cache / "tiny-bert-h32"
    if (out / "modules.json").exists():
        return out
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    from neural_ingest.model_resolve import resolve_model_dir

    tok = AutoTokenizer.from_pretrained(str(resolve_model_dir(TOKENIZER_MODEL)))
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=512)).save_pretrained(tmp / "bert")
    tok.save_pretrained(tmp / "bert")
    w = models.Transformer(str(tmp / "bert"), max_seq_length=256)
    dim = w.get_embedding_dimension() if hasattr(w, "get_embedding_dimension") else w.get_word_embedding_dimension()
    SentenceTransformer(modules=[w, models.Pooling(dim, "mean")]).save(str(tmp))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _words() -> list[str]:
    from transformers import AutoTokenizer

    from neural_ingest.model_resolve import resolve_model_dir

    tok = AutoTokenizer.from_pretrained(str(resolve_model_dir(TOKENIZER_MODEL)))
    return sorted(w for w in tok.vocab if w.isalpha() and len(w) > 2)[:5000]  # the vocab dict has no stable order


def build_corpus(n: int, cache: Path) -> Path:
    """JSONL of n documents {id, title, body, topic}: seeded by n, so a size always gives the same file."""
    path = cache / f"corpus-{n}.jsonl"
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    words = _words()
    rng = random.Random(n)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    with tmp.open("w") as f:
        for i in range(n):
            target = rng.randint(200, 1500)
            text: list[str] = []
            size = 0
            while size < target:
                w = rng.choice(words)
                text.append(w)
                size += len(w) + 1
            f.write(
                json.dumps({"id": f"d{i}", "title": f"doc {i}", "body": " ".join(text)[:target], "topic": rng.choice("abcde")})
                + "\n"
            )
    tmp.rename(path)
    return path


def changed_variant(corpus: Path) -> tuple[Path, int]:
    """The same corpus with 1% of the documents' text changed (every CHANGED_EVERY-th, from d7): a night
    where 1% of the documents changed. Returns the path and how many changed."""
    path = corpus.with_name(corpus.stem + "-changed1pct.jsonl")
    changed = 0
    if not path.exists():
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        with corpus.open() as src, tmp.open("w") as f:
            for i, line in enumerate(src):
                out = line
                if i % CHANGED_EVERY == CHANGED_OFFSET:
                    doc = json.loads(line)
                    doc["body"] = f"changed {doc['body']}"
                    out = json.dumps(doc) + "\n"
                f.write(out)
        tmp.rename(path)
    with corpus.open() as src:
        n = sum(1 for _ in src)
    changed = len(range(CHANGED_OFFSET, n, CHANGED_EVERY))
    return path, changed


# --------------------------------------------------------------------------- measured subprocesses
@dataclass
class Measured:
    exit_code: int
    seconds: float
    peak_rss_tree: int
    peak_rss_main: int
    processes: int
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)


def _rss(proc) -> int:
    import psutil

    try:
        return proc.memory_info().rss
    except psutil.Error:  # gone between listing and reading
        return 0


class Poller(threading.Thread):
    """Samples RSS every ``interval`` s: the CLI process tree, and optional extra role -> pid roots (each
    root with its descendants, e.g. a Flink TaskManager or the SDK worker pool)."""

    def __init__(self, pid: int, interval: float, roles: dict[str, tuple[int, bool]] | None = None):
        super().__init__(daemon=True)
        self.pid, self.interval, self.roles = pid, interval, roles or {}
        self.stop = threading.Event()
        self.peak_tree = 0
        self.seen: set[int] = set()
        self.role_peak: dict[str, int] = dict.fromkeys(self.roles, 0)
        self.role_pids: dict[str, set[int]] = {r: set() for r in self.roles}

    @staticmethod
    def _tree(pid: int, descendants: bool = True) -> list:
        import psutil

        try:
            p = psutil.Process(pid)
            return [p, *(p.children(recursive=True) if descendants else [])]
        except psutil.Error:
            return []

    def sample(self) -> None:
        procs = self._tree(self.pid)
        self.seen.update(p.pid for p in procs)
        self.peak_tree = max(self.peak_tree, sum(_rss(p) for p in procs))
        for role, (pid, descendants) in self.roles.items():
            procs = self._tree(pid, descendants)
            if role == "sdk_workers":  # the pool's children only, not the pool itself
                procs = procs[1:]
            self.role_pids[role].update(p.pid for p in procs)
            self.role_peak[role] = max(self.role_peak[role], sum(_rss(p) for p in procs))

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)


def measure(cmd: list[str], log_path: Path, interval: float, roles: dict[str, tuple[int, bool]] | None = None) -> Measured:
    """Run cmd (cwd: the checkout, PYTHONPATH: this checkout), poll its memory, reap it with wait4."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with log_path.open("w") as out:

        def start_and_reap() -> tuple[Poller, int, Any]:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
            poller = Poller(proc.pid, interval, roles)
            poller.start()
            _, status, usage = os.wait4(proc.pid, 0)
            return poller, os.waitstatus_to_exitcode(status), usage

        seconds, (poller, exit_code, usage) = timed(start_and_reap)
        poller.stop.set()
        poller.join()
    roles_out = {
        r: {"peak_rss_gib": round(poller.role_peak[r] / GIB, 3), "processes": len(poller.role_pids[r])} for r in poller.roles
    }
    return Measured(exit_code, seconds, poller.peak_tree, usage.ru_maxrss * 1024, len(poller.seen), roles_out)


def cli() -> str:
    return shutil.which("neural-ingest", path=str(Path(sys.executable).parent)) or "neural-ingest"


# --------------------------------------------------------------------------- the benchmark
class Growth:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.cache = Path(args.cache_dir).expanduser() / "growth"
        self.cache.mkdir(parents=True, exist_ok=True)
        self.tag = uuid.uuid4().hex[:6]
        self.work = self.cache / f"work-{self.tag}"
        self.work.mkdir(parents=True)
        self.sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
        self.skip = {s.strip() for s in (args.skip or "").split(",") if s.strip()}
        self.runs: list[dict[str, Any]] = []
        self.corpora: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}
        self.os_url: str | None = args.opensearch_url
        self.os_started = False
        self.indices: list[str] = []  # what we created on the cluster, deleted at the end
        self.flink_name: str | None = None
        self.flink_args: list[str] = []

    # ------------------------------------------------------------------ config
    def encoder(self) -> dict[str, Any]:
        if self.args.encoder == "hash":
            return {"type": "hash", "dimension": self.args.hash_dimension}
        return {"type": "sentence_transformers", "model": "tiny-bert-h32", "model_path": str(build_tiny_model(self.cache)),
                "device": "cpu", "batch_size": self.args.batch_size}

    def config(self, name: str, corpus: Path, sink: dict[str, Any], d: Path) -> Path:
        cfg = {
            "run": {"name": name},
            "source": {"type": "jsonl", "path": str(corpus), "id_field": "id", "text_fields": ["title", "body"],
                       "metadata_fields": ["topic"]},
            "encoder": self.encoder(),
            "sink": sink,
            "dead_letter": {"path": str(d / "dead-letters")},
        }
        path = d / "config.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    def os_sink(self, index: str) -> dict[str, Any]:
        return {"type": "opensearch", "hosts": [self.os_url], "index": index, **self.args.os_sink}

    # ------------------------------------------------------------------ one scenario
    def scenario(self, name: str, n: int, args: list[str], roles: dict[str, tuple[int, bool]] | None = None,
                 **extra: Any) -> dict[str, Any]:
        d = self.work / f"{name}-{n}"
        summary_path = d / "summary.json"
        cmd = [cli(), *args[:2], "--summary", str(summary_path), *args[2:]]
        log(f"{name} n={n}: {' '.join(cmd[1:])}")
        m = measure(cmd, d / "log.txt", self.args.poll, roles)
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        r: dict[str, Any] = {
            "scenario": name,
            "documents": n,
            "exit_code": m.exit_code,
            "seconds": round(m.seconds, 2),
            "docs_per_second": round(n / m.seconds, 1) if m.seconds > 0 else None,
            "peak_rss_tree_gib": round(m.peak_rss_tree / GIB, 3),
            "peak_rss_main_gib": round(m.peak_rss_main / GIB, 3),
            "processes": m.processes,
            "summary": {k: summary.get(k) for k in ("status", "read", "encoded", "indexed", "failed", "skipped", "reused",
                                                     "deleted", "reconciles", "seconds", "docs_per_second", "runner")},
            "command": " ".join(["neural-ingest", *cmd[1:]]),
            **extra,
        }
        if m.roles:
            r["processes_by_role"] = m.roles
        if isinstance(summary.get("reindex"), dict):
            r["reindex"] = {k: summary["reindex"].get(k) for k in ("status", "mode", "new_index", "previous_index")}
        if m.exit_code != 0:
            r["log_tail"] = (d / "log.txt").read_text()[-3000:]
            log(f"{name} n={n}: exit {m.exit_code}; log: {d / 'log.txt'}")
        self.runs.append(r)
        log(
            f"{name} n={n}: {m.seconds:.1f} s, tree {r['peak_rss_tree_gib']} GiB, main {r['peak_rss_main_gib']} GiB, "
            f"read {r['summary']['read']} indexed {r['summary']['indexed']} encoded {r['summary']['encoded']} "
            f"reused {r['summary']['reused']}"
        )
        return r

    def _dir(self, name: str, n: int) -> Path:
        d = self.work / f"{name}-{n}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def run_size(self, n: int) -> None:
        corpus = build_corpus(n, self.cache)
        changed, n_changed = changed_variant(corpus)
        self.corpora[str(n)] = {"path": str(corpus), "documents": n, "changed_path": str(changed), "changed_documents": n_changed}
        if "parquet" not in self.skip:
            d = self._dir("parquet", n)
            self.scenario(
                "parquet", n, ["run", str(self.config(f"growth-{n}", corpus, {"type": "parquet", "path": str(d / "out")}, d))]
            )
        if self.os_url and "opensearch" not in self.skip:
            index = f"growth-{self.tag}-{n}-run"
            self.indices.append(index)
            d = self._dir("opensearch", n)
            self.scenario("opensearch", n, ["run", str(self.config(f"growth-{n}", corpus, self.os_sink(index), d))], index=index)
        if self.os_url and "reindex" not in self.skip:
            alias = f"growth-{self.tag}-{n}"
            self.indices.append(f"{alias}-*")
            for name, src in (("reindex_full", corpus), ("reindex_unchanged", corpus), ("reindex_changed", changed)):
                d = self._dir(name, n)
                self.scenario(name, n, ["reindex", str(self.config(f"growth-{n}", src, self.os_sink(alias), d))], alias=alias)

    def run_flink(self, n: int) -> None:
        """The same corpus into Parquet on the Flink cluster, once per --flink-parallelism."""
        corpus = build_corpus(n, self.cache)
        if self.flink_args:
            for p in self.args.flink_parallelism:
                name = f"flink_p{p}"
                d = self._dir(name, n)
                cfg = self.config(f"growth-{n}", corpus, {"type": "parquet", "path": str(d / "out")}, d)
                self.scenario(name, n, ["run", str(cfg), "--", *self.flink_args, f"--parallelism={p}"],
                              roles=self.flink_roles(), parallelism=p, slots=self.args.flink_slots)

    # ------------------------------------------------------------------ OpenSearch
    def start_opensearch(self) -> None:
        if self.os_url or ({"opensearch", "reindex"} <= self.skip):
            return
        log(f"starting OpenSearch (scripts/opensearch-local.sh start --name growth --port {self.args.opensearch_port})")
        r = subprocess.run(["bash", str(ROOT / "scripts" / "opensearch-local.sh"), "start", "--name", "growth",
                            "--port", str(self.args.opensearch_port), "--clean"], check=False, capture_output=True, text=True)
        if r.returncode != 0:
            self.skipped["opensearch"] = f"opensearch-local.sh start failed: {r.stderr.strip()[-500:]}"
            log(self.skipped["opensearch"])
            return
        self.os_url = f"http://127.0.0.1:{self.args.opensearch_port}"
        self.os_started = True

    def cleanup_opensearch(self) -> None:
        if not self.os_url:
            return
        if self.os_started:
            subprocess.run(
                ["bash", str(ROOT / "scripts" / "opensearch-local.sh"), "stop", "--name", "growth"],
                check=False,
                capture_output=True,
            )
            return
        if self.args.keep_indices:
            return
        from opensearchpy import OpenSearch

        client = OpenSearch(self.os_url, timeout=120)
        for pattern in self.indices:  # only the names this run created (its own tag)
            client.indices.delete(index=pattern, ignore=[404], expand_wildcards="all")

    # ------------------------------------------------------------------ Flink
    def start_flink(self) -> None:
        if self.args.runner != "flink" or "flink" in self.skip:
            return
        script = ROOT / "scripts" / "flink-local.sh"
        self.flink_name = f"growth-{self.tag}"
        log(f"starting Flink ({script.name} start --name {self.flink_name} --slots {self.args.flink_slots})")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        cmd = ["bash", str(script), "start", "--name", self.flink_name, "--python", sys.executable,
               "--slots", str(self.args.flink_slots), "--parallelism", str(max(self.args.flink_parallelism)),
               "--tm-memory", self.args.flink_tm_memory, "--tm-off-heap", self.args.flink_tm_off_heap, "--free-ports"]
        r = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            self.skipped["flink"] = f"flink-local.sh start failed: {r.stderr.strip()[-1500:]}"
            log(self.skipped["flink"])
            self.stop_flink()
            return
        self.flink_args = r.stdout.split()

    def flink_roles(self) -> dict[str, tuple[int, bool]]:
        """Each part's pid from flink-local.sh's pid files: (pid, with descendants)."""
        run = (
            Path(os.environ.get("NEURAL_INGEST_CACHE", Path.home() / ".cache" / "neural-ingest"))
            / "flink"
            / "instances"
            / str(self.flink_name)
            / "run"
        )
        files = {
            "jobmanager": f"flink-{self.flink_name}-standalonesession.pid",
            "taskmanager": f"flink-{self.flink_name}-taskexecutor.pid",
            "job_server": "jobserver.pid",
            "worker_pool": "workerpool.pid",
        }
        roles: dict[str, tuple[int, bool]] = {}
        for role, f in files.items():
            try:
                roles[role] = (int((run / f).read_text().split()[-1]), False)
            except (OSError, ValueError, IndexError):
                continue
        if "worker_pool" in roles:
            roles["sdk_workers"] = (roles["worker_pool"][0], True)
        return roles

    def stop_flink(self) -> None:
        if self.flink_name:
            subprocess.run(["bash", str(ROOT / "scripts" / "flink-local.sh"), "delete", "--name", self.flink_name],
                           check=False, capture_output=True)

    # ------------------------------------------------------------------ results
    def get(self, name: str, n: int) -> dict[str, Any] | None:
        return next((r for r in self.runs if r["scenario"] == name and r["documents"] == n and r["exit_code"] == 0), None)

    def ratios(self) -> list[dict[str, Any]]:
        out = []
        for n in self.sizes:
            full = self.get("reindex_full", n)
            for name in ("reindex_unchanged", "reindex_changed"):
                r = self.get(name, n)
                if full and r:
                    ratio = r["seconds"] / full["seconds"]
                    out.append({"ratio": f"{name}/reindex_full", "documents": n, "value": round(ratio, 3),
                                "target": RATIO_TARGET, "met": ratio <= RATIO_TARGET})
            direct = self.get("parquet", n)
            p = {q: self.get(f"flink_p{q}", n) for q in self.args.flink_parallelism}
            for q, r in p.items():
                if r and direct:
                    out.append({"ratio": f"flink_p{q}/parquet (throughput)", "documents": n,
                                "value": round(direct["seconds"] / r["seconds"], 3)})
            if p.get(1) and p.get(2):
                out.append({"ratio": "flink_p2/flink_p1 (throughput)", "documents": n,
                            "value": round(p[1]["seconds"] / p[2]["seconds"], 3)})
        return out

    def write(self, started: str) -> dict[str, Any]:
        res = {
            "schema": SCHEMA,
            "kind": "growth",
            "started": started,
            "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(),
            "settings": {
                "sizes": self.sizes,
                "encoder_name": self.args.encoder,
                "encoder": self.encoder()
                if self.args.encoder == "hash"
                else {**self.encoder(), "model_path": "<cache>/tiny-bert-h32"},
                "runner": self.args.runner,
                "flink": {
                    "slots": self.args.flink_slots,
                    "parallelism": self.args.flink_parallelism,
                    "tm_memory": self.args.flink_tm_memory,
                    "tm_off_heap": self.args.flink_tm_off_heap,
                }
                if self.args.runner == "flink"
                else None,
                "opensearch": "started by the benchmark (opensearch-local.sh)"
                if self.os_started
                else ("given" if self.os_url else None),
                "memory": "peak_rss_tree_gib: psutil samples every poll_seconds of the summed RSS of the CLI process and its "
                "descendants; peak_rss_main_gib: ru_maxrss of the CLI process from wait4 (as /usr/bin/time -v); "
                "Flink: processes_by_role, the same sampling per cluster process",
                "poll_seconds": self.args.poll,
                "opensearch_sink_extra": self.args.os_sink,
            },
            "scenarios": list(SCENARIOS) + [f"flink_p{p}" for p in self.args.flink_parallelism]
            if self.args.runner == "flink"
            else list(SCENARIOS),
            "corpora": self.corpora,
            "runs": self.runs,
            "ratios": self.ratios(),
            "skipped": {**dict.fromkeys(self.skip, "--skip"), **self.skipped},
        }
        (self.out / "growth.json").write_text(json.dumps(res, indent=2) + "\n")
        return res

    def chart(self) -> None:
        plot(self.runs, self.args.encoder, self.out / "growth.png")


def plot(runs: list[dict[str, Any]], encoder: str, path: Path) -> None:
    """Two log-log panels, one line per scenario: documents vs seconds, documents vs peak GiB."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax_s, ax_m) = plt.subplots(1, 2, figsize=(12, 5))
    names = list(dict.fromkeys(r["scenario"] for r in runs if r["exit_code"] == 0))
    for name in names:
        rows = sorted((r for r in runs if r["scenario"] == name and r["exit_code"] == 0), key=lambda r: r["documents"])
        xs = [r["documents"] for r in rows]
        ax_s.plot(xs, [r["seconds"] for r in rows], marker="o", label=name)
        ax_m.plot(xs, [_total_gib(r) for r in rows], marker="o", label=name)
    for ax, title, ylabel in ((ax_s, "wall time", "seconds"), (ax_m, "peak memory (process tree; Flink: all processes)", "GiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        # plain numbers, not 10^k, on the log axes; every minor tick of the y axis labelled (narrow ranges)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("documents")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"neural-ingest growth ({encoder} encoder)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _total_gib(r: dict[str, Any]) -> float:
    """A run's peak memory: the CLI tree, plus on Flink every cluster process (each role's own peak)."""
    return r["peak_rss_tree_gib"] + sum(v["peak_rss_gib"] for v in r.get("processes_by_role", {}).values())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000", help="Corpus sizes, comma-separated.")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--cache-dir", default="~/.cache/neural-ingest/bench", help="Corpora, the tiny model, run directories.")
    p.add_argument("--encoder", choices=("tiny", "hash"), default="tiny")
    p.add_argument("--hash-dimension", type=int, default=384)
    p.add_argument("--batch-size", type=int, default=64, help="The tiny encoder's batch size.")
    p.add_argument("--opensearch-url", help="Use this cluster (indices named growth-<tag>-*, deleted at the end) "
                   "instead of starting one with opensearch-local.sh.")
    p.add_argument("--opensearch-port", type=int, default=9271)
    p.add_argument("--os-sink", type=json.loads, default={}, help="JSON merged into every OpenSearch sink config, "
                   "e.g. '{\"bulk\": {\"timeout\": 600}}'.")
    p.add_argument("--keep-indices", action="store_true", help="With --opensearch-url: leave the indices for inspection.")
    p.add_argument("--skip", default="", help="Any of parquet, opensearch, reindex, flink.")
    p.add_argument("--runner", choices=("direct", "flink"), default="direct", help="flink: also the Flink scale-out runs.")
    p.add_argument("--flink-parallelism", default="1,2", type=lambda s: [int(x) for x in s.split(",") if x.strip()])
    p.add_argument("--flink-slots", type=int, default=2)
    p.add_argument("--flink-tm-memory", default="3072m")
    p.add_argument("--flink-tm-off-heap", default="768m", help="TaskManager task off-heap (Beam's data plane buffers); "
                   "with less, 100,000 documents exhausted its direct memory and the job hung.")
    p.add_argument("--poll", type=float, default=0.25, help="Seconds between memory samples.")
    p.add_argument("--no-chart", action="store_true")
    p.add_argument("--merge", action="store_true", help="Keep the runs of other sizes (and scenarios not run now) from the "
                   "growth.json already in --out: e.g. add the 1M rows to a 10k/100k result.")
    p.add_argument("--replot", action="store_true", help="Only draw growth.png again from the growth.json in --out.")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    previous = Path(args.out) / "growth.json"
    if args.replot:
        res = json.loads(previous.read_text())
        plot(res["runs"], res["settings"]["encoder_name"], Path(args.out) / "growth.png")
        return res
    kept: list[dict[str, Any]] = []
    g = Growth(args)
    if args.merge and previous.exists():
        old = json.loads(previous.read_text())
        if old["settings"].get("encoder_name") != args.encoder:
            raise SystemExit(
                f"--merge: {previous} holds runs of the {old['settings'].get('encoder_name')} encoder, not {args.encoder}"
            )
        kept = old["runs"]
        g.corpora.update(old.get("corpora", {}))
    try:
        g.start_opensearch()
        for n in g.sizes:
            g.run_size(n)
        g.start_flink()  # after the DirectRunner runs: an idle cluster is not in their way
        for n in g.sizes:
            g.run_flink(n)
    except KeyboardInterrupt:  # Ctrl-C: stop what was started, keep what was measured
        g.skipped["interrupted"] = "stopped with Ctrl-C; the runs after the last one listed did not happen"
    finally:
        g.stop_flink()
        g.cleanup_opensearch()
    done = {(r["scenario"], r["documents"]) for r in g.runs}
    g.runs[:0] = [r for r in kept if (r["scenario"], r["documents"]) not in done]
    g.sizes = sorted({*g.sizes, *(r["documents"] for r in g.runs)})
    res = g.write(started)
    if not args.no_chart:
        g.chart()
    for r in res["runs"]:
        print(f"{r['scenario']:<18} {r['documents']:>9,} docs {r['seconds']:>9.1f} s  {r['peak_rss_tree_gib']:>6.2f} GiB tree  "
              f"{r['peak_rss_main_gib']:>6.2f} GiB main  exit {r['exit_code']}")
    for q in res["ratios"]:
        print(
            f"{q['ratio']:<34} {q['documents']:>9,} {q['value']:>7.3f}"
            + (f"  target <= {q['target']} {'met' if q['met'] else 'NOT met'}" if "target" in q else "")
        )
    return res


if __name__ == "__main__":
    main()
