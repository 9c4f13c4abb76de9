"""Where results live: a cell's record on disk (identity hash, atomic write, locks, resume), the database locks,
provenance, MLflow tracking, a record read as one results row, and the time a record says it took."""
