# Sourced by scripts/serve and scripts/test: create .venv and install the project into it.
# Re-runs are quick: pip skips what is already there.
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
spec="."
[ -n "${EXTRAS:-}" ] && spec=".[${EXTRAS}]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
