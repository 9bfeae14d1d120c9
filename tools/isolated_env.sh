# Shared steps of the isolated cross-check environments (tools/vbench_env, tools/reward_env); source it.
#
# Each builder sources this file and lists only what differs: its default folder, its packages and any
# post-install fix. The steps here: make the venv (git-ignored), pip install into it, run a Python snippet
# in it, print versions. With RFVIDEO_ENV_DRY_RUN=1 nothing is created or installed: every command is
# printed instead, one per line, so a builder can be checked without building its ~6 GB environment.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/../isolated_env.sh"
#   env_init "${1:-$ROOT/.venv-name}"   # sets VENV; PYTHON picks the base interpreter (default python3)
#   env_torch                           # the matched torch/torchvision pair ($ENV_TORCH_PAIR)
#   env_pip --no-deps "pkg==1.0"        # pip install --quiet into the venv
#   env_python <<'PY' ... PY            # a snippet run by the venv's python (stdin)
#   env_versions torch vbench           # name==version lines
#   env_done "VBench cross-check environment"

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
DRY_RUN="${RFVIDEO_ENV_DRY_RUN:-0}"
# A CUDA build that also runs on the CPU; torchvision must match it exactly (~6 GB).
ENV_TORCH_PAIR=("torch==2.14.1" "torchvision==0.29.1")

# Print a command as one line of shell words (dry run), else run it.
_env_do() {
    if [ "$DRY_RUN" = "1" ]; then
        printf '%q ' "$@" | sed 's/ $//'
        printf '\n'
    else
        "$@"
    fi
}

# env_init DIR: create the venv at DIR unless it has a python already; keep it out of git.
env_init() {
    VENV="$1"
    if [ ! -x "$VENV/bin/python" ]; then
        _env_do "$PYTHON" -m venv "$VENV"
    fi
    if [ "$DRY_RUN" = "1" ]; then
        echo "echo '*' > $VENV/.gitignore"
    else
        echo '*' > "$VENV/.gitignore"
    fi
}

# env_pip ARGS...: pip install --quiet ARGS into the venv.
env_pip() {
    _env_do "$VENV/bin/python" -m pip install --quiet "$@"
}

# env_torch: the matched torch/torchvision pair, first (later installs then keep it).
env_torch() {
    env_pip "${ENV_TORCH_PAIR[@]}"
}

# env_python: run the Python snippet on stdin with the venv's python.
env_python() {
    if [ "$DRY_RUN" = "1" ]; then
        echo "$VENV/bin/python - <<'PY'"
        cat
        echo "PY"
    else
        "$VENV/bin/python" -
    fi
}

# env_versions NAME...: print NAME==version for each installed distribution.
env_versions() {
    env_python <<PY
import importlib.metadata as md

for name in "$*".split():
    print(f"{name}=={md.version(name)}")
PY
}

# env_done LABEL: the last line of a build.
env_done() {
    echo "$1 ready: $VENV"
}
