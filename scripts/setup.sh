#!/usr/bin/env bash
# Sets up a fresh machine: system packages through apt, .venv at the repository root, the project with its extras.
# Idempotent and quick on a second run: it re-installs only when the files that describe the set-up change.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the project needs at run time or in its tests; later features append here.
APT_PACKAGES=(libopus0 libsndfile1 chromium chromium-driver postgresql)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing system packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.setup-stamp
want=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing Python packages into .venv"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -c constraints.txt torch==2.13.0
    # Test oracle: the official package, without its torchaudio dependency (a CUDA-only wheel for current torch);
    # tests give it a stand-in module (testkit/standins). Installed before the project so that our `encodec`
    # command wins. --no-warn-conflicts: pip would otherwise print "ERROR: pip's dependency resolver ..." about
    # that one missing torchaudio on every set-up; a conflict among the project's own requirements still stops
    # the install, since the resolver itself is unaffected by this flag.
    .venv/bin/pip install -q --no-deps encodec==0.1.1
    .venv/bin/pip install -q --no-warn-conflicts -c constraints.txt -e ".[bench,web,dev,mos,neural]"
    # Vocos (it imports the official encodec above) without its declared torchaudio (see pyproject.toml's `neural`).
    .venv/bin/pip install -q --no-deps vocos==0.1.0
    # Nothing above may replace the pinned CPU torch (constraints.txt): stop here if something did.
    .venv/bin/python -c "import torch, sys; ok = torch.__version__.startswith('2.13.0') and torch.version.cuda is None
sys.exit(0 if ok else f'setup: torch {torch.__version__} (CUDA {torch.version.cuda}) replaced the pinned CPU torch')"
    echo "$want" > "$stamp"
fi
