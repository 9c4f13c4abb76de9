"""The rounds design: randomized interleaved rounds over the cells of one load group (Abedi & Brecht's RMIT).

A load group is the cells of one Hydra job that share a loaded model (artifact.sweep.launch: model, quant, meter, ppl,
device, seed); they differ in batch size, length, workload or power mode. The process loads the model once, warms up
once at every cell's shape (a full generation each, largest first, discarded), measures the drift canary, then runs
rounds: each round visits every cell that still needs rounds once, in a fresh order drawn from a seed it records
(power modes as blocks in a random order, the cells of a block shuffled), and the canary is measured again after it.
A visit is a short warm-up at the cell's shape and `min_reps` timed generations (artifact.cell.visit.timed_run) with no
empty_cache: after an out-of-memory visit the allocator is emptied and the next visit's warm-up is a full one.

Each visit is written into its cell's record (the whole record, atomically: artifact.store.record) before the next
visit starts, so a crash loses at most the visit in flight, and a resumed run measures only the missing visits. A
cell is complete when it holds `rounds` visits; a later run asking more rounds adds to it. The process holds the
lock of every cell of its group and marks the one it is visiting, so a death is blamed on that cell only."""
from __future__ import annotations

import contextlib
import hashlib
import os
import random
import statistics
import time
import traceback
import uuid
from dataclasses import dataclass, field

import torch

from ..cell import canary
from ..cell.hoststate import HostState, visit_fields
from ..cell.measure import TokenCountError, generate_once, generation_config
from ..cell.progress import LiveLine
from ..cell.session import Session
from ..cell.visit import cell_perplexity, describe, implied_oom, is_oom, timed_run
from ..core import roofline
from ..core.config import BadInput, Cell
from ..core.schema import Result
from ..core.stats import round_summary, within_visit
from ..models import loading
from ..power import nvml
from ..store.record import ROUNDS_SCHEMA, CellStore, cell_hash, run_name, too_few_processes
from ..workload.prompts import build_prompts
from . import cells, isolation

METRICS = ("latency_s", "ttft_s", "decode_s", "token_throughput_tps", "decode_tps", "per_token_latency_s")


@dataclass
class Member:
    """A cell of the group and what its record holds so far."""
    cell: Cell
    key: str
    store: CellStore
    result: dict                                  # the record's result, rebuilt after every visit
    rows: list[dict]                              # reps.csv: every timed repetition of every visit
    tables: dict[str, list[dict]]                 # power.csv, marks.csv of every visit
    before: dict = field(default_factory=dict)    # cell_seconds, warmup_latency_s, canary_seconds of earlier runs
    prompts: torch.Tensor | None = None
    warmups: list[float] = field(default_factory=list)  # this run's warm-up latencies (round 0 and visits)
    seconds: float = 0.0                          # this run's time spent on the cell (its share of the load too)
    gpu_uuid: str | None = None                   # the GPU this process measures on (a resumed record's may differ)
    timed: float = 0.0                            # this run's timed repetitions
    canary: float = 0.0                           # this run's canary points (the group's first member carries them)

    @property
    def name(self) -> str:
        return run_name(self.cell.config)

    @property
    def visits(self) -> list[dict]:
        return self.result.setdefault("visits", [])

    @property
    def needed(self) -> int:
        return max(0, self.cell.design.rounds - len(self.visits)) if self.result["status"] == "ok" else 0


def run_group(group: list[Cell], session: Session) -> None:
    """Measure the cells of one load group in rounds (cells already complete are skipped, a death is handed to a
    child process as in the back-to-back design)."""
    with contextlib.ExitStack() as held:
        members = [m for m in (_claim(cell, session, held) for cell in group) if m is not None]
        if members:
            _measure(members, session)


def _claim(cell: Cell, session: Session, held: contextlib.ExitStack) -> Member | None:
    """The cell as a member of the group run, its lock held until the group ends; None where it is complete, busy,
    adopted from another study or handed to a child."""
    key = cell_hash(cell.config, cell.device, cell.hardware)
    store = CellStore(cell.traces_dir, cell.study)
    name, rounds, spread = run_name(cell.config), cell.design.rounds, cell.design.spread
    done = None if cell.force else store.finished(key, rounds, spread)
    lock = held.enter_context(cells.cell_lock(store, session, cell, key))
    if done is None and lock and not cell.force:  # finished by another worker between the first look and the lock
        done = store.finished(key, rounds, spread)
    if done is not None:
        print(f"{name}: done already ({store.path(key)}), skipped; force=true re-runs it", flush=True)
        if lock:  # backfills MLflow if a crash came between record and log
            cells.log_to_mlflow(cell, store.path(key), done)
        return None
    if not lock:
        print(f"{name}: another process is measuring it ({store.path(key)}), skipped", flush=True)
        return None
    twin = None if cell.force or not cell.reuse_twins else store.twin(key, rounds, spread)
    if twin is not None:
        result = store.adopt(key, twin, cell.config)
        print(f"{name}: the same cell was measured in study {twin.parent.name} ({twin}); its record is reused "
              f"-> {store.path(key)}", flush=True)
        cells.log_to_mlflow(cell, store.path(key), result)
        return None
    if cells.failed_earlier(store, key, name):
        session.failed.append("error")
        return None
    deaths = store.deaths(key)
    if deaths and not isolation.is_child_for(key):
        status, _ = cells.measure_in_child(cell, session, store, key, deaths)
        if status not in ("ok", "oom", "busy"):
            session.failed.append(status)
        return None
    store.mark_visiting(key, False)
    return _member(cell, key, store)


def _member(cell: Cell, key: str, store: CellStore) -> Member:
    """The member with the visits its record already holds (a rounds record of this cell; none with force=true, or
    where its rounds came from fewer processes than the design spreads them over: it starts over)."""
    old = None if cell.force else store.recorded(key)
    short = too_few_processes(old, cell.design.spread)
    if short is not None:
        print(f"{run_name(cell.config)}: its {short[0]} rounds came from {short[1]} process(es), fewer than "
              f"spread={list(cell.design.spread)} asks (rounds, processes): measured again ({store.path(key)})",
              flush=True)
        old = None
    here = nvml.cuda_uuid(cell.device) if cell.device.startswith("cuda") else None
    if old is not None and old.get("design") == "rounds" and old.get("status") != "oom" and old.get("visits"):
        rows, tables = store.rows(key)
        result = {k: v for k, v in old.items() if k not in ("traceback", "stderr_tail", "process_deaths")}
        result.update(status="ok", message="")
        before = {k: old.get(k) for k in ("cell_seconds", "warmup_latency_s", "canary_seconds")}
        return Member(cell, key, store, result, rows, tables, before, gpu_uuid=here)
    result = {"cell_hash": key, "record_id": uuid.uuid4().hex, "schema": ROUNDS_SCHEMA, "design": "rounds",
              "status": "ok", "message": "", "device": cell.device, "hardware": cell.hardware,
              "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "gpu_uuid": here,
              "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "power_mode": {"name": cell.power.name, "status": "not set (power=none)"}, "visits": []}
    return Member(cell, key, store, result, [], {}, gpu_uuid=here)


def _measure(members: list[Member], session: Session) -> None:
    first = members[0].cell
    group_run = uuid.uuid4().hex[:12]
    started = time.perf_counter()
    try:
        loaded, reused = session.model(first)
    except BadInput:
        raise
    except Exception as e:  # every cell of the group is recorded with the load's failure
        for m in members:
            _fail(m, e, session)
            _finish(m, session, None)
        return
    load_s = time.perf_counter() - started if not reused else 0.0
    host = HostState(first.device)
    try:
        for i, m in enumerate(members):
            m.result["model"] = {**loaded.info, "reused_from_previous_cell": reused or i > 0}
            if loaded.prepared:
                m.result["prepared"] = loaded.prepared
        members[0].seconds += load_s
        _prepare(members, session, loaded)
        probe = _canary(members, loaded, group_run, session)
        _rounds(members, session, loaded, host, (group_run, probe))
        for m in members:
            _finish(m, session, loaded)
    finally:
        host.close()
        loading.release()  # between groups the GPU holds the next group's weights alone


def _prepare(members: list[Member], session: Session, loaded: loading.Loaded) -> None:
    """Prompts of every cell, then one full generation at every cell's shape, largest first (discarded: the
    first generation at a shape pays one-off costs, about 3x a warm one on an H100)."""
    for m in members:
        c = m.cell
        try:
            m.prompts, m.result["prompts"] = build_prompts(loaded.tokenizer, c.data_dir, c.workload, c.batch_size,
                                                           c.in_len, token_cache=session.token_ids)
        except BadInput:
            raise
        except Exception as e:
            _fail(m, e, session)
    for m in sorted(members, key=lambda m: -(m.cell.batch_size * m.cell.seq_len)):
        if m.result["status"] != "ok" or not m.needed:
            continue
        c = m.cell
        try:
            g = generate_once(loaded.model, m.prompts.to(c.device), c.out_len,
                              generation_config(loaded.model, loaded.tokenizer, c.out_len), c.device)
            m.warmups.append(g.end - g.start)
            m.seconds += g.end - g.start
        except Exception as e:
            _fail(m, e, session)


def _canary(members: list[Member], loaded: loading.Loaded, group_run: str, session: Session):
    """The group's canary and its first point (None where canary_seconds is 0)."""
    c = members[0].cell
    if c.design.canary_seconds <= 0 or not any(m.needed for m in members):
        return None
    probe = canary.Canary(loaded.model, loaded.tokenizer, c.device, loading.compute_dtype(c.quant, c.device),
                          c.design.canary_seconds)
    _canary_point(members, probe, (group_run, 0), session)
    return probe


def _canary_point(members: list[Member], probe, where: tuple[str, int], session: Session) -> None:
    group_run, point = where
    c = members[0].cell
    started = time.perf_counter()
    row = {"group_run": group_run, "point": point, "group": f"{c.model.name}/{c.quant.name}", **probe.probe(),
           "device": c.device, "hardware": c.hardware, "cells": [m.key for m in members]}
    canary.append(c.traces_dir, c.study, row)
    session.canary_points.append(row)
    members[0].canary += time.perf_counter() - started


def visit_order(items: list, seed: int, mode=lambda m: m.cell.power.name) -> list:
    """A round's visits: the power modes (`mode` of each item) as blocks in a random order, the items of each block
    shuffled, all drawn from `seed`."""
    rng = random.Random(seed)
    modes = sorted({mode(m) for m in items})
    rng.shuffle(modes)
    out = []
    for name in modes:
        block = [m for m in items if mode(m) == name]
        rng.shuffle(block)
        out += block
    return out


def round_seed(seed: int, keys: list[str], k: int) -> int:
    """The seed of a group run's round k: from the cells' `seed`, the hashes of the cells it visits and k (recorded
    with every visit, so the order can be drawn again: `visit_order`)."""
    text = f"{seed}:{','.join(sorted(keys))}:{k}"
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def _rounds(members: list[Member], session: Session, loaded: loading.Loaded, host: HostState, run: tuple) -> None:
    group_run, probe = run
    total = max((m.needed for m in members), default=0)
    cold = False  # after an out-of-memory visit: the allocator was emptied, the next warm-up is a full one
    for k in range(1, total + 1):
        pending = [m for m in members if m.needed]
        seed = round_seed(members[0].cell.seed, [m.key for m in pending], k)
        visiting = visit_order(pending, seed)
        for position, m in enumerate(visiting):
            if not m.needed:  # out of memory by implication earlier in this round
                continue
            print(f"[round {k}/{total}, visit {position + 1}/{len(visiting)}] {m.name} (its round "
                  f"{len(m.visits) + 1} of {m.cell.design.rounds})", flush=True)
            slot = {"group_run": group_run, "group_round": k, "position": position, "order_seed": seed}
            cold = _visit(m, session, loaded, host, (slot, cold))
        if probe is not None:
            _canary_point(members, probe, (group_run, k), session)


def _visit(m: Member, session: Session, loaded: loading.Loaded, host: HostState, where: tuple) -> bool:
    """One visit of the cell, written into its record. Returns whether the allocator was emptied (an OOM)."""
    slot, cold = where
    c = m.cell
    smaller = session.oom_below(m.store, c) if c.batch_ladder else None
    if smaller is not None:
        m.result = implied_oom(c, session, m.key, smaller)
        _write(m, session)
        return cold
    if c.power.kind != "none":
        m.result["power_mode"] = session.power_modes(c.power).apply(c.power)
    m.store.mark_visiting(m.key, True)
    live = LiveLine().start()
    before, t_wall, started = host.snapshot(), time.time(), time.perf_counter()
    try:
        run, power, tables = timed_run(c, session, loaded, m.prompts, live,
                                       warmup_tokens=None if cold else c.design.warmup_tokens, keep_cache=True)
    except BadInput:
        raise
    except Exception as e:
        live.stop()
        m.seconds += time.perf_counter() - started
        _fail(m, e, session)
        m.store.mark_visiting(m.key, False)
        return cold or m.result["status"] == "oom"
    live.stop()
    seconds = time.perf_counter() - started
    m.seconds += seconds
    m.timed += run.timing["timed_seconds"]
    m.warmups += run.timing["warmup_latency_s"]
    _add_visit(m, (run, power, tables), {**slot, "started_at": t_wall, "seconds": round(seconds, 3),
                                         **visit_fields(before, host.snapshot())})
    _write(m, session)
    m.store.mark_visiting(m.key, False)
    return False


def _add_visit(m: Member, measured: tuple, visit: dict) -> None:
    """The visit's rows (its repetitions with the visit's fields) and its entry in the result's visits."""
    run, power, tables = measured
    r = len(m.visits) + 1
    energy = (power or {}).get("energy") or {}
    per_rep = energy.get("per_rep_j") or [None] * len(run.reps)
    visit.update(round=r, warmup_s=run.timing["warmup_latency_s"], reps=len(run.reps),
                 memory_peak_bytes=run.memory["incremental_peak_bytes"], power=_visit_power(power),
                 **({"gpu_uuid": m.gpu_uuid} if m.gpu_uuid else {}))
    for rep, joules in zip(run.reps, per_rep):
        m.rows.append({"round": r, **{k: visit[k] for k in ("group_run", "group_round", "position", "order_seed",
                                                            "started_at")},
                       **rep, "energy_j": joules, "visit_power_median_w": visit["power"].get("median_w")})
    for name, rows in tables.items():
        m.tables.setdefault(name, []).extend({"round": r, **row} for row in rows)
    m.visits.append(visit)
    memory = m.result.get("memory")
    if memory is None or run.memory["incremental_peak_bytes"] > memory["incremental_peak_bytes"]:
        m.result["memory"] = run.memory
    m.result["tokens"] = {"seq_len": m.cell.seq_len, **run.tokens}
    if power is not None:
        m.result["power_meter"] = {k: power[k] for k in ("meter", "idle", "rate_hz_requested") if k in power}


def _visit_power(power: dict | None) -> dict:
    """What a visit keeps of its power section: status, median and mean power, energy per repetition and per token,
    the counter check, samples."""
    if power is None:
        return {"status": "no sensor"}
    if power.get("status") != "ok":
        return {"status": power.get("status"), "reason": power.get("reason")}
    energy, timed = power["energy"], power["timed"]
    stats = timed["power_w"] or {}
    sensor = {"updates": timed.get("updates"), "updates_seen": timed.get("updates_seen"),
              "bound_rel": energy.get("bound_rel"),
              "jtop_tot_median_w": (timed.get("jtop_tot") or {}).get("median_w"),
              "jtop_tot_per_token_j": energy.get("jtop_tot_per_token_j")}
    return {"status": "ok", "median_w": stats.get("median"), "mean_w": stats.get("mean"), "samples": stats.get("n"),
            "energy_per_rep_j": energy["per_rep_j_median"], "per_token_j": energy["per_token_j"],
            "net_per_token_j": energy.get("net_per_token_j"), "source": energy["source"],
            "sampled_vs_counter_rel": energy.get("sampled_vs_counter_rel"), "min_window_s": power.get("min_window_s"),
            **{k: v for k, v in sensor.items() if v is not None}}


def summarize(m: Member, session: Session) -> Result:
    """The cell's result from its visits: per metric the median over rounds (each round's value the median of its
    visit's repetitions) with its interval, the within-visit spread apart, power and energy the same way."""
    result = m.result
    by_round: dict[int, list[dict]] = {}
    for row in m.rows:
        by_round.setdefault(int(row["round"]), []).append(row)
    if by_round:
        result["metrics"] = {k: round_summary([statistics.median(float(r[k]) for r in rs)
                                               for rs in by_round.values()]) for k in METRICS}
        result["within_visit"] = {k: within_visit([[float(r[k]) for r in rs] for rs in by_round.values()])
                                  for k in ("latency_s", "token_throughput_tps")}
        result["timed_seconds"] = sum(float(r["latency_s"]) for r in m.rows)
    result["rounds"] = {"asked": m.cell.design.rounds, "done": len(m.visits), "design": "rounds",
                        "group_runs": sorted({v["group_run"] for v in m.visits})}
    gpus = sorted({v.get("gpu_uuid") or result.get("gpu_uuid") for v in m.visits} - {None})  # older visits: none
    if len(gpus) > 1:  # rounds resumed on another machine: the record's gpu_uuid is its first visit's
        result["rounds"]["gpu_uuids"] = gpus
    result["power"] = _power(m)
    result["warmup_latency_s"] = (m.before.get("warmup_latency_s") or []) + m.warmups
    result["cold_start_ratio"] = (m.warmups[0] / result["metrics"]["latency_s"]["median"]
                                  if m.warmups and "metrics" in result else result.get("cold_start_ratio"))
    result["canary_seconds"] = round((m.before.get("canary_seconds") or 0.0) + m.canary, 3)
    result["cell_seconds"] = round((m.before.get("cell_seconds") or 0.0) + m.seconds + m.canary, 3)
    result["provenance"] = session.provenance()
    return result


def _power(m: Member) -> dict:
    """The power section over the visits: ok visits give median power and energy per round; else why not."""
    visits = [v["power"] for v in m.visits]
    ok = [p for p in visits if p.get("status") == "ok"]
    meter = m.result.get("power_meter", {})
    if not ok:
        why = next((p for p in visits if p.get("status") == "invalid"), visits[0] if visits else {})
        return {"status": why.get("status", "no sensor"), "reason": why.get("reason", ""), **meter}
    checks = [p["sampled_vs_counter_rel"] for p in ok if p.get("sampled_vs_counter_rel") is not None]
    energy = {"source": ok[0]["source"], "per_rep_j_median": statistics.median(p["energy_per_rep_j"] for p in ok),
              "per_rep_j_rounds": round_summary([p["energy_per_rep_j"] for p in ok]),
              "per_token_j": statistics.median(p["per_token_j"] for p in ok),
              "per_token_j_rounds": round_summary([p["per_token_j"] for p in ok]),
              "sampled_vs_counter_rel": max(checks, key=abs) if checks else None}
    nets = [p["net_per_token_j"] for p in ok if p.get("net_per_token_j") is not None]
    if nets:
        energy["net_per_token_j"] = statistics.median(nets)
    timed = {"power_w": round_summary([p["median_w"] for p in ok])}
    if any("bound_rel" in p for p in ok):  # no counter: the worst visit's bound from the sensor's timing
        energy["bound_rel"] = max(p.get("bound_rel", 0.0) for p in ok)
    if all("jtop_tot_median_w" in p for p in ok):  # a Jetson: jtop's `tot` figure beside the module total
        spread = round_summary([p["jtop_tot_median_w"] for p in ok])
        timed["jtop_tot"] = {"median_w": spread["median"], "power_w": spread}
        energy["jtop_tot_per_token_j"] = statistics.median(p["jtop_tot_per_token_j"] for p in ok)
    return {"status": "ok", **meter, "timed": timed, "energy": energy, "visits_ok": len(ok),
            "visits_not_ok": len(visits) - len(ok)}


def _write(m: Member, session: Session) -> None:
    result = summarize(m, session) if m.result.get("design") == "rounds" else m.result
    cells.write_record(m.store, m.key, m.cell, result, (m.rows, m.tables))


def _fail(m: Member, e: Exception, session: Session) -> None:
    """A failed visit (or load, or warm-up): the cell is recorded oom or error, its earlier visits kept, and it
    leaves the group run."""
    m.result["status"] = "oom" if is_oom(e) else "error"
    m.result["message"] = f"{type(e).__name__}: {e}"
    if m.result["status"] == "error" and not isinstance(e, TokenCountError):
        m.result["traceback"] = traceback.format_exc(limit=8)
    if m.result["status"] == "oom":
        loading.release()
        session.note_oom(m.cell.config, m.cell.device, m.cell.hardware, m.key)
    _write(m, session)


def _finish(m: Member, session: Session, loaded: loading.Loaded | None) -> None:
    """After the rounds: perplexity and device peaks of a measured cell, the record's last write, MLflow, its line."""
    if m.result["status"] == "ok":
        started = time.perf_counter()
        if "perplexity" not in m.result.get("perplexity", {}):  # an earlier run of the cell may have scored it
            m.result["perplexity"] = cell_perplexity(m.cell, session, loaded)
        m.result["device_peaks"] = session.device_peaks(m.cell, roofline.compute_dtype(m.result))
        m.seconds += time.perf_counter() - started
        _write(m, session)
    # where the time of this process went (artifact.store.timing): this run's share, not the record's earlier runs
    session.results.append({**m.result, "timed_seconds": m.timed, "warmup_latency_s": m.warmups,
                            "canary_seconds": m.canary, "cell_seconds": m.seconds + m.canary})
    session.traces_dir = m.cell.traces_dir
    print(f"{m.name}: {describe(m.result)} -> {m.store.path(m.key)}", flush=True)
    if m.result["status"] not in ("ok", "oom"):
        session.failed.append(m.result["status"])
    cells.log_to_mlflow(m.cell, m.store.path(m.key), m.result)
