"""Hydra's basic sweeper with one change: the cells are ordered so that the power mode changes least
often, then the model, then the precision (each change costs a mode switch or a model load)."""
from __future__ import annotations

from dataclasses import dataclass

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore

SLOWEST_FIRST = ("power", "model", "quant", "meter", "workload")


def _rank(override) -> int:
    key = override.get_key_element().lstrip("+~")
    group = key.split(".")[0]
    return SLOWEST_FIRST.index(group) if group in SLOWEST_FIRST else len(SLOWEST_FIRST)


class OrderedSweeper(BasicSweeper):
    @staticmethod
    def split_arguments(overrides, max_batch_size):
        # itertools.product varies the first list slowest; Python's sort is stable for the rest
        return BasicSweeper.split_arguments(sorted(overrides, key=_rank), max_batch_size)


@dataclass
class OrderedSweeperConf(BasicSweeperConf):
    _target_: str = "artifact.sweeper.OrderedSweeper"


def register() -> None:
    ConfigStore.instance().store(group="hydra/sweeper", name="ordered", node=OrderedSweeperConf)
