"""Registers the package's structured-config schema (`run_schema`) and its resolver with Hydra in
processes that compose conf/ without importing `artifact.run`: DVC's Hydra composition
(`dvc exp run -S model=phi2`, .dvc/config hydra.plugins_path) imports Hydra plugins from here."""
from hydra.core.plugins import Plugins  # noqa: F401  (Hydra scans this namespace for plugins)
from hydra.plugins.search_path_plugin import SearchPathPlugin

from artifact.core.config import register

register()


class EdgeLlmArtifactSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path) -> None:  # nothing to add: registration is the point
        pass
