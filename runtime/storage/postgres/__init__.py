"""The PostgreSQL backend: the key-value seam (``runtime.storage.kv``) over one shared database.

The only package that imports ``psycopg`` and ``psycopg_pool``. ``engine`` owns connections and
transactions, ``tables`` the SQL of one transaction, ``schema`` the versioned schema and
``urls`` what of a URL is safe to show. Import ``runtime.storage.postgres.engine`` lazily: a
store on LMDB never loads the driver.
"""
