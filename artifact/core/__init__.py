"""The vocabulary every axis shares: the resolved config (Cell, BadInput), the record's schema, statistics,
atomic writes, the processor's identity and the roofline's device peaks. Imports nothing else of the package."""
