"""Derived indexes kept beside the store: BM25, the pager's session index, block uses, embeddings."""
