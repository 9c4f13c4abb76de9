"""The record's declared shape: what result.json holds, section by section, with units.

Each producer returns its section (the loader ModelInfo, the timed run Timing + Memory + Tokens and the
repetitions, the power summary Power, the perplexity Perplexity, provenance Provenance); `run.measure_cell`
composes them into a Result. Keys absent from a section mean "not measured", never zero."""
from __future__ import annotations

from typing import Any, Optional, TypedDict


class Interval(TypedDict):
    """The interval of a median over rounds (artifact.core.stats.interval)."""
    low: Optional[float]    # None with one round
    high: Optional[float]
    method: str             # min-max over rounds (2-7 rounds) | bootstrap of the median over rounds (8 and more)
    coverage: Optional[float]  # of the median: 1 - 2 x 0.5^R for the min-max, 0.95 for the bootstrap
    n: int                  # rounds


class Summary(TypedDict, total=False):
    """Statistics of one metric over the timed repetitions (back-to-back) or over rounds (rounds design: each round's
    value is the median of its visit's repetitions). Unit: the metric's."""
    median: float
    mean: float
    std: Optional[float]    # None with one repetition or round: no spread, not zero
    p90: Optional[float]    # None below 64 samples
    min: float
    max: float
    n: int                  # repetitions (back-to-back) or rounds
    interval: Interval      # rounds design only


class Rep(TypedDict):
    """One timed repetition (a row of reps.csv). Times are time.perf_counter() seconds."""
    rep: int
    t_start: float
    t_first_token: float
    t_end: float
    latency_s: float            # end-to-end batch latency
    ttft_s: float               # prefill: time to the first new token
    decode_s: float             # first new token to the last
    new_tokens: int             # batch x out_len, checked
    token_throughput_tps: float  # the paper's T_P: batch x (in + out) / latency, tokens/s
    decode_tps: float           # batch x (out_len - 1) / decode_s, tokens/s
    per_token_latency_s: float  # decode_s / (out_len - 1)


class Tokens(TypedDict, total=False):
    in_len: int                 # prompt tokens per sequence
    out_len: int                # generated tokens per sequence
    seq_len: int                # in_len + out_len (the paper's sl)
    batch_size: int
    generated_per_rep: int      # batch x out_len
    checked: bool               # every repetition generated exactly these


class Timing(TypedDict):
    metrics: dict[str, Summary]  # latency_s, ttft_s, decode_s, token_throughput_tps, decode_tps, per_token_latency_s
    warmup_latency_s: list[float]  # each untimed warm-up generation, seconds
    cold_start_ratio: Optional[float]  # first warm-up latency / median timed latency (None without warm-up)
    timed_seconds: float         # sum of the timed repetitions' latencies, seconds


class Memory(TypedDict, total=False):
    incremental_peak_bytes: int  # the headline number: CUDA peak allocated, else RSS, over the pre-run baseline
    memory_kind: str             # which of the two, in words
    rss_peak_bytes: int
    rss_baseline_bytes: int
    rss_incremental_peak_bytes: int
    rss_method: str              # VmHWM reset, or RSS polled
    cuda_allocated_baseline_bytes: int
    cuda_incremental_peak_allocated_bytes: int
    cuda_incremental_peak_reserved_bytes: int
    cuda_reserved_baseline_bytes: int        # after the cached blocks of earlier cells were released
    cuda_peak_allocated_bytes: int           # absolute peaks of the cell (weights included)
    cuda_peak_reserved_bytes: int
    gpu_used_at_start_bytes: Optional[int]   # NVML used memory (what nvidia-smi shows), None without NVML


class ModelInfo(TypedDict, total=False):
    weights: str                # real | synthetic
    dtype: str                  # compute dtype, e.g. float16
    quant_method: str           # none | bnb-int8 | bnb-4bit | gptq
    source: str                 # where the weights came from, in words
    tokenizer: str              # where the tokenizer came from
    load_seconds: float         # loading alone (derived checkpoints are made before the timer starts)
    prepare_seconds: float      # finding or making the derived checkpoints it loads (GGUF, GPTQ, fp16 copy)
    params: int                 # stored tensor elements (packed 4-bit weights count less than the model's params)
    weight_bytes: int           # model.get_memory_footprint()
    layer_types: list[str]      # the Linear classes that ran (the kernels)
    reused_from_previous_cell: bool


class PowerWindow(TypedDict, total=False):
    seconds: float
    power_w: Optional[dict[str, float]]  # median/mean/p95/min/max (W) and n; None when no sample fell inside
    energy_j: float              # trapezoid over the samples, joules
    rails: dict[str, dict[str, Optional[float]]]  # rail -> median_w, energy_j
    jtop_tot: dict[str, Optional[float]]  # Jetson: median_w, energy_j of jtop's `tot` figure (the paper's)
    updates: int                 # independent sensor updates in the window (its length / the update interval)
    updates_seen: int            # changes of the total the trace shows (a check on the update interval)


class Energy(TypedDict, total=False):
    source: str                  # counter (the meter's energy counter, apportioned by the samples) | samples
    timed_j: float               # energy of the timed window, joules
    sampled_timed_j: float       # the trapezoid over the samples alone, joules (the check where a counter exists)
    per_rep_j_median: float      # median energy of one batch (one repetition), joules
    per_rep_j: list[float]
    prefill_j: float
    decode_j: float
    per_token_j: float           # timed_j / (batch x (in + out) x reps)
    per_generated_token_j: float  # timed_j / generated tokens
    net_j: float                 # timed_j minus idle power x window
    net_per_token_j: float
    idle_power_w: float
    counter_j: float             # the hardware energy counter over its own interval (NVML, RAPL)
    counter_interval_s: float
    sampled_over_counter_interval_j: float
    sampled_vs_counter_rel: Optional[float]  # (sampled - counter) / counter
    bound_j: Optional[float]     # no counter: how far the sampled energy may be from the true one (sensor timing)
    shift_s: float               # ... the largest time shift of the sampled trace behind it
    swing_w: float               # ... the power's swing around the window
    bound_is: str
    bound_rel: Optional[float]   # ... bound_j / timed_j (a rounds record: the worst visit's)
    jtop_tot_per_token_j: float  # Jetson: energy per token by jtop's `tot` figure


class Power(TypedDict, total=False):
    status: str                  # ok | no sensor | invalid
    reason: str                  # why not ok
    meter: dict[str, Any]        # the meter's self-description
    rate_hz_requested: float
    rate_hz_achieved: Optional[float]
    samples_total: int
    sampler_errors: list[str]
    idle: dict[str, Any]         # idle power of the cell's power mode (status, power_w, seconds, energy_j)
    timed: PowerWindow
    energy: Energy
    min_window_s: float          # the timed window's floor: max(min_seconds, MIN_WINDOW_UPDATES sensor updates)


class Perplexity(TypedDict, total=False):
    status: str                  # "not measured" (with reason) when absent
    reason: str
    perplexity: float            # exp(nll_sum / scored_tokens)
    nll_sum: float
    scored_tokens: int
    corpus_tokens: int
    method: str
    window: int
    stride: int
    max_tokens: Optional[int]
    add_bos: bool
    corpus: str
    text: str
    seconds: float               # computing it
    computed_in: str             # "this cell", or "an earlier cell" of the process (same model, quant and method)


class Provenance(TypedDict, total=False):
    git_sha: str
    git_dirty: Optional[bool]
    host: str
    python: str
    platform: str
    cpu_model: str
    cpu_cores_logical: int
    cpu_cores_physical: int
    memory_total_bytes: int
    l4t_release: Optional[str]   # set on a Jetson
    packages: dict[str, str]
    gpu_name: str
    gpu_count: int
    gpu_memory_bytes: int
    cuda: str
    gpu_driver: str


class Visit(TypedDict, total=False):
    """One visit of a cell in the rounds design (result.json `visits`; its repetitions are reps.csv rows with the
    same `round`)."""
    group_run: str               # the process's run of the load group (the canary's points carry it too)
    group_round: int             # the round of that group run (cells visited in one round share it)
    position: int                # place in the round's order (0: first)
    order_seed: int              # the seed the round's order was drawn from (artifact.sweep.rounds.round_seed)
    started_at: float            # wall clock, epoch seconds
    seconds: float               # the whole visit: idle window, warm-up, timed repetitions
    round: int                   # the cell's own round number (1..rounds)
    warmup_s: list[float]        # the visit's warm-up generations (short: warmup_tokens new tokens)
    reps: int                    # timed repetitions in the visit
    memory_peak_bytes: int       # incremental peak of the visit
    power: dict[str, Any]        # status, median_w, mean_w, samples, energy_per_rep_j, per_token_j, source, ...
    gpu_sm_mhz_start: Optional[int]   # NVML SM clock and temperature at the visit's edges (None off CUDA)
    gpu_sm_mhz_end: Optional[int]
    gpu_temp_c_start: Optional[int]
    gpu_temp_c_end: Optional[int]
    load1_start: float           # host load average
    load1_end: float
    cpu_steal: Optional[float]   # share of CPU time the hypervisor stole during the visit


class Result(TypedDict, total=False):
    """result.json. Keys in the order they are written (back-to-back; a rounds record adds schema, design, visits,
    rounds, within_visit, canary_seconds and power_meter)."""
    cell_hash: str
    record_id: str               # unique per measurement (a re-run with force=true gets a new one)
    schema: int                  # 2: the rounds design (absent: back-to-back, schema 1)
    design: str                  # rounds (absent: back-to-back repetitions)
    status: str                  # ok | oom | error
    message: str                 # the error, for oom and error
    device: str
    hardware: str                # the GPU's or CPU's model name: part of the cell's identity
    cuda_visible_devices: Optional[str]  # as the process saw it (a launcher's GPU assignment); None if unset
    gpu_uuid: Optional[str]      # NVML's UUID of the cell's CUDA device, from torch, whatever the meter; None off CUDA
    started_at: str              # local time, ISO 8601
    tokens: Tokens
    power: Power
    model: ModelInfo
    prepared: dict[str, Any]     # provenance.json of the models/ folder the weights loaded from, if any
    prompts: dict[str, Any]      # how the prompts were chosen
    metrics: dict[str, Summary]
    memory: Memory
    warmup_latency_s: list[float]
    cold_start_ratio: Optional[float]
    timed_seconds: float
    perplexity: Perplexity
    device_peaks: dict[str, Any]  # roofline peaks: name, mem_bw_gbs (GB/s), tflops per dtype, source (table/probe)
    traceback: str               # status error only
    cell_seconds: float          # the whole cell: load, prompts, idle, warm-up, timed, perplexity
    provenance: Provenance
    power_mode: dict[str, Any]   # what was set and read back (or "not set")
    stderr_tail: list[str]       # a cell that killed its process twice: the child's last stderr lines
    process_deaths: list[dict]   # and the processes that died holding its lock (host, pid, since, found)
    visits: list[Visit]          # rounds design: every visit, in order
    rounds: dict[str, Any]       # rounds design: asked, done, design, group_runs
    within_visit: dict[str, dict]  # rounds design: pooled std and cv of the repetitions inside a visit, per metric
    canary_seconds: float        # rounds design: the canary points this cell carried (a load group's first cell)
    power_meter: dict[str, Any]  # rounds design: the meter's self-description and idle power, for the power section
