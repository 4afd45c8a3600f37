"""neural-ingest: batch embedding ETL for OpenSearch semantic search, on Apache Beam."""

__version__ = "0.1.0"
