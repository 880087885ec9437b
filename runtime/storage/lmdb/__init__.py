"""The embedded LMDB backend: the only package that imports ``lmdb``."""
