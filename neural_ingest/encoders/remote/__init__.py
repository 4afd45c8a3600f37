"""Remote encoders: ML Commons ``_predict``, OpenAI-compatible ``/v1/embeddings``,
text-embeddings-inference ``/embed`` and ``/embed_sparse``, and a generic connector-style HTTP
template. See docs/remote-encoders.md."""
from neural_ingest.encoders.remote.client import RemoteClient, RemoteError, RemoteSetupError
from neural_ingest.encoders.remote.encoder import RemoteEncoder

__all__ = ["RemoteClient", "RemoteEncoder", "RemoteError", "RemoteSetupError"]
