"""Module power on a Jetson: which rails make the module's total (conf/jetson_modules.yaml, from NVIDIA's rail
descriptions), and the figure jetson-stats' jtop shows as `tot`, kept beside it so a result can be set against the
paper's (which read jtop).

jtop's rule (jetson-stats, jtop/core/power.py `total_power`): where a rail is named VDD_IN or POM_5V_IN it is the
total (and jtop drops it from its rail list); otherwise the total is the plain sum of every rail. On an AGX Orin
that sum counts VDDQ_VDD2_1V8AO twice, since VIN_SYS_5V0 already includes it."""
from __future__ import annotations

from pathlib import Path

import yaml

from .meters import MeterError

MODULES_FILE = Path(__file__).resolve().parents[2] / "conf" / "jetson_modules.yaml"
JTOP_TOTAL_RAILS = ("POM_5V_IN", "VDD_IN")  # jtop's own list, in its order


def modules() -> dict[str, dict]:
    return yaml.safe_load(MODULES_FILE.read_text())


def module_total(rails: list[str], override: list[str] | None = None) -> dict:
    """{rails, module, is}: the rails summed into the module's power for a board exposing `rails`. `override`
    (meter.total_rails) wins where given; a board no definition matches gets the plain sum of its rails, saying so."""
    if override:
        missing = [r for r in override if r not in rails]
        if missing:
            raise MeterError(f"meter.total_rails names {', '.join(missing)}, not found; rails here: {', '.join(rails)}")
        return {"rails": list(override), "module": None, "is": "sum of meter.total_rails (set for this run)"}
    for key, module in modules().items():
        if set(module["rails"]) <= set(rails):
            return {"rails": list(module["total"]), "module": key,
                    "is": f"{module['name']} module power: {' + '.join(module['total'])} ({module['why']}); "
                          f"not the carrier board, not wall power"}
    return {"rails": list(rails), "module": None,
            "is": f"plain sum of every rail: no module in {MODULES_FILE.name} has these rails ({', '.join(rails)}); "
                  f"a rail that contains another is counted twice"}


def jtop_tot(rails_w: dict[str, float]) -> float:
    """jtop's `tot` from the rails as jtop lists them (VDD_IN / POM_5V_IN where present, else the sum of all)."""
    for name in JTOP_TOTAL_RAILS:
        if name in rails_w:
            return rails_w[name]
    return sum(rails_w.values())
