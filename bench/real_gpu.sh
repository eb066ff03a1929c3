#!/bin/bash
# The sidecar on a real NVIDIA GPU, in one run: what the driver answers and what each call
# costs (bench.real_gpu), a trace recorded while the sidecar wraps the real pegasus-kickstart
# running a PyTorch job (bench/gpu_job.py), exit statuses and signals with and without the
# sidecar, and bench.sidecar's costs on a GPU host. From the repository root, on a GPU host
# with PyTorch, nvidia-ml-py and $PEGASUS_HOME/bin/pegasus-kickstart:
#
#     OUT=real-gpu-out bash bench/real_gpu.sh
#
# Writes log.txt, nvidia-smi-q.txt, probe.json, trace.json, record.out and events.jsonl to $OUT.
# Installs the sidecar beside this python3 (its bin/ and a .pth in its site-packages), as a
# pip install would: run it in a throwaway environment.
set -u
OUT=${OUT:-real-gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
python=$(command -v python3)
root=$PWD
kickstart="$PEGASUS_HOME/bin/pegasus-kickstart"
step() { echo; echo "== $(date +%T) $*"; }

step environment
nvidia-smi --query-gpu=name,uuid,driver_version,persistence_mode,mig.mode.current,power.limit,memory.total,clocks.max.sm,pci.bus_id --format=csv
nvidia-smi -q > "$OUT/nvidia-smi-q.txt" 2>&1
"$python" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__)"
"$python" -m pip show nvidia-ml-py 2>/dev/null | grep -i '^version'
echo "cores $(nproc), kernel $(uname -r)"
bindir=$(dirname "$python")
site=$("$python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cp bin/pegasus-kickstart-gpu "$bindir/" && echo "$root" > "$site/kickstart-gpu-checkout.pth" \
    || { echo "cannot install the sidecar beside $python"; exit 1; }
"$python" -m compileall -q kickstart_gpu
sidecar="$bindir/pegasus-kickstart-gpu"

step "NVML calls on the real driver"
timeout 120 "$python" -m bench.real_gpu --calls 50

step "recorded run: record_trace > pegasus-kickstart-gpu > pegasus-kickstart > gpu_job.py"
export PEGASUS_WF_LABEL=real-gpu PEGASUS_DAG_JOB_ID=train_ID01
timeout 120 "$python" -m kickstart_gpu.record_trace --interval 0.5 "$OUT/trace.json" -- \
    "$sidecar" --interval 1 --events-file "$OUT/events.jsonl" -- \
    "$kickstart" -n train -N ID01 -R local -- "$python" "$root/bench/gpu_job.py" \
    > "$OUT/record.out"
echo "recorded run exit status $?"
unset PEGASUS_WF_LABEL PEGASUS_DAG_JOB_ID

step "exit status and signal, job alone and under the sidecar (auto, GPU by UUID prefix)"
uuid=$(nvidia-smi --query-gpu=uuid --format=csv,noheader | head -1)
for ending in 3 SIGTERM; do
    timeout 60 "$python" bench/gpu_job.py "$ending" 0.25 > /dev/null 2>&1
    alone=$?
    CUDA_VISIBLE_DEVICES=${uuid:0:12} timeout 60 "$sidecar" --interval 1 \
        --output "$OUT/ending-$ending.block" -- "$python" bench/gpu_job.py "$ending" 0.25 \
        > "$OUT/ending-$ending.stdout" 2>/dev/null
    wrapped=$?
    echo "ending $ending: alone $alone, under the sidecar $wrapped," \
        "stdout lines $(wc -l < "$OUT/ending-$ending.stdout")"
done
for ending in 3 SIGTERM; do  # which GPU the sidecar took, and what it saw
    grep -o '"selected_by":[^,]*\|"device_count":[0-9]*\|"max_gpu_usage":[0-9]*' \
        "$OUT/ending-$ending.block" | tr '\n' ' '; echo
done
rm -f "$OUT"/ending-*

step "bench.sidecar on a GPU host"
timeout 300 "$python" -m bench.sidecar --cpu-seconds 20
step done
