"""edge-llm-artifact: re-run the measurements of Arya & Simmhan, PAISE 2025 (arXiv 2506.09554)."""
__version__ = "0.1.0"
