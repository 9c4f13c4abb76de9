"""Running many cells: the checks before a sweep, Hydra jobs and launchers, one cell's life (lock, resume, a child
process for a cell that ends its process, the record), the rounds design, the experiments of a profile and the
checkpoints they need, disk space."""
