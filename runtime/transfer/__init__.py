"""Moving data in and out: transcript import, session export and import."""
