"""Records -> results table -> figures, tables and the claims check. Reads records (or the committed
results table); never loads a model or touches hardware."""
