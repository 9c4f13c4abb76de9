"""Measuring one cell: the timed generation with device sync, perplexity, one visit (warm-up, repetitions,
power window), the drift canary, the host's state, and the process state shared by the cells (Session)."""
