# Sourced by scripts/serve, scripts/test and scripts/install: create .venv and install the
# project into it, editable. pip runs only when something it reads changed: a stamp in .venv
# records which pyproject.toml (and Python) each set of extras was installed from. Source
# edits need no reinstall (the install is editable); `rm .venv/.asr-installed` forces one.
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
extras="${EXTRAS:-}"
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
stamp=.venv/.asr-installed
key="$(cksum <pyproject.toml | tr ' ' '-')-$(.venv/bin/python -c 'import sys; print(sys.version_info[:3])' | tr -d ' (),')"
# A line "<key> <extras>" means: installed with those extras from this pyproject.toml. The
# plain install is part of every install with extras.
if ! grep -qsx -- "$key $extras" "$stamp" \
    && ! { [ -z "$extras" ] && grep -qs -- "^$key " "$stamp"; } \
    || [ ! -x .venv/bin/asr-supervisor ] || [ ! -x .venv/bin/asrctl ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
    { grep -s -- "^$key " "$stamp" || true; echo "$key $extras"; } >"$stamp.new"
    mv "$stamp.new" "$stamp"
fi
