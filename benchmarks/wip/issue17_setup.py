"""Tiny random-weight BERT sentence-transformers model + synthetic JSONL corpora (issue 17 memory measurements)."""
import json, random, sys
from pathlib import Path
import torch
from transformers import AutoTokenizer, BertConfig, BertModel
from sentence_transformers import SentenceTransformer, models
from neural_ingest.model_resolve import resolve_model_dir

root = Path("/tmp/wh")
tok = AutoTokenizer.from_pretrained(str(resolve_model_dir("huggingface/sentence-transformers/all-MiniLM-L6-v2")))
out = root / "tiny"
if not out.exists():
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=512)).save_pretrained(out / "bert")
    tok.save_pretrained(out / "bert")
    w = models.Transformer(str(out / "bert"), max_seq_length=256)
    SentenceTransformer(modules=[w, models.Pooling(w.get_word_embedding_dimension(), "mean")]).save(str(out))
words = [w for w in tok.vocab if w.isalpha() and len(w) > 2][:5000]
for n in map(int, sys.argv[1:]):
    path = root / f"corpus-{n}.jsonl"
    if path.exists():
        continue
    rng = random.Random(n)
    with path.open("w") as f:
        for i in range(n):
            target = rng.randint(200, 1500)
            text = []
            size = 0
            while size < target:
                w = rng.choice(words); text.append(w); size += len(w) + 1
            f.write(json.dumps({"id": f"d{i}", "title": f"doc {i}", "body": " ".join(text)[:target], "topic": rng.choice("abcde")}) + "\n")
