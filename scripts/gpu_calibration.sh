#!/usr/bin/env bash
# Measure this machine's GPU for llmsim's calibration data: the GEMMs, norms, activations and
# attention of Llama-3.1-8B and Llama-3.1-70B at TP 1 (`llmsim profile`), then
#   - how well the shipped profile of this GPU predicts them, nothing refitted (`llmsim fidelity
#     PROFILE --data`), and
#   - a profile calibrated on them, with its held-out error (`llmsim calibrate PROFILE --data`).
#
#   scripts/gpu_calibration.sh OUT [PROFILE]      (PROFILE: the shipped profile, default H100-SXM)
#
# Runs from a source tree with the python3 that has torch (installed llmsim not needed; wheels
# of missing dependencies in .whl/ are installed to /tmp/site first). Environment: DEVICE
# (default cuda), MODELS (default "Llama-3.1-8B Llama-3.1-70B"), PROFILE_ARGS (extra options
# of llmsim profile).
set -euo pipefail
out=${1:?usage: scripts/gpu_calibration.sh OUT [PROFILE]}
hw=${2:-H100-SXM}
device=${DEVICE:-cuda}
models=${MODELS:-Llama-3.1-8B Llama-3.1-70B}
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
if compgen -G "$root/.whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$root"/.whl/*.whl
    export PYTHONPATH=/tmp/site:$root${PYTHONPATH:+:$PYTHONPATH}
else
    export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
fi
mkdir -p "$out"
{
    date -u +"date: %Y-%m-%dT%H:%M:%SZ"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
            | sed 's/^/gpu: /'
    else
        echo "gpu: none (device $device)"
    fi
    "$python" -c 'import torch; print("torch:", torch.__version__, "cuda:", torch.version.cuda)'
} | tee "$out/provenance.txt"
data=()
for model in $models; do
    name=$(basename "$model" .yaml)
    # shellcheck disable=SC2086  # PROFILE_ARGS is a list of options
    "$python" -m llmsim profile "$model" --tp 1 --device "$device" --out "$out/$name.csv" \
        ${PROFILE_ARGS:-}
    data+=(--data "$out/$name.csv")
done
"$python" -m llmsim fidelity "$hw" "${data[@]}" --out "$out/shipped"
"$python" -m llmsim calibrate "$hw" "${data[@]}" --engine "torch $("$python" -c \
    'import torch; print(torch.__version__)') (llmsim profile)" --out "$out/profile"
