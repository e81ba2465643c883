# The two set-up commands of the README: `make demo` (main job) and `make test` (tests).
# Both create .venv on first use with everything they need; nothing is downloaded at run time.
PY := .venv/bin/python
SYS_PY ?= python3

.PHONY: demo test venv sysdeps bench

.venv/.done: requirements.txt requirements-dev.txt
	$(SYS_PY) -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: .venv/.done

# espeak-ng makes real speech for tests; installed when we are root and it is missing.
sysdeps:
	@command -v espeak-ng >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq espeak-ng sox >/dev/null; } || echo "note: espeak-ng missing; tests that synthesise speech will fail"

demo: venv
	$(PY) -m lipsync_models demo -o out/demo.mp4

test: venv sysdeps
	$(PY) -m pytest -q

bench: venv
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done
