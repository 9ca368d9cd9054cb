# Sourced by scripts/test after scripts/_venv.sh: make the heavy optional stacks (NeMo +
# torch for parakeet-nemo, onnx-asr for parakeet-onnx) importable in .venv without
# installing them into it on every clean clone. They are installed once, into a virtualenv
# under ~/.cache/asr-supervisor/stacks/ named by what it holds (the extras' requirements
# and the Python version), and .venv reads it through a .pth file placed after its own
# site-packages: where both hold a package, .venv's version is the one imported.
# About 2.3 GB and 90 s the first time; nothing after. ASR_STACKS_DIR moves the cache.
stacks="${ASR_STACKS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/asr-supervisor/stacks}"
# The requirements of the [parakeet] and [parakeet-onnx] extras, as pyproject.toml has them;
# torch pinned to the CPU build that lies on these machines' disk (an unpinned one is CUDA's).
requirements="$(.venv/bin/python - <<'PY'
import tomllib
extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]
print("\n".join(extras["parakeet"] + extras["parakeet-onnx"] + ["torch==2.13.0"]))
PY
)"
pyver="$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
stack="$stacks/parakeet-py$pyver-$(printf '%s\n' "$requirements" | cksum | cut -d' ' -f1)"
if [ ! -f "$stack/.complete" ]; then
    echo "installing the Parakeet stack (NeMo, torch, onnx-asr) once, into $stack ..." >&2
    rm -rf "$stack"
    mkdir -p "$stacks"
    "$(.venv/bin/python -c 'import sys; print(sys._base_executable)')" -m venv "$stack"
    mapfile -t reqs <<<"$requirements"
    # (the index here warns about every missing mirror folder: those lines are noise)
    "$stack/bin/python" -m pip install --quiet --disable-pip-version-check "${reqs[@]}" 2> >(grep -v "^WARNING: Location" >&2)
    touch "$stack/.complete"
fi
site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$("$stack/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >"$site/asr-parakeet-stack.pth"
