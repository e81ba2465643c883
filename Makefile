# The two set-up commands of the README: `make demo` (main job) and `make test` (tests).
# Both create .venv on first use with everything they need; nothing is downloaded at run time.
PY := .venv/bin/python
SYS_PY ?= python3

.PHONY: demo test venv sysdeps bench

.venv/.done: requirements.txt requirements-dev.txt requirements-mediapipe.txt
	$(SYS_PY) -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	# optional face mesh, tested too; --no-deps keeps numpy 2 and the headless OpenCV
	$(PY) -m pip install -q --no-deps mediapipe==0.10.21
	$(PY) -m pip install -q -r requirements-mediapipe.txt
	touch $@

venv: .venv/.done

# Debian packages the tests use: espeak-ng and sox make real speech; chromium drives the web
# extension's browser test. Installed when we are root and one is missing.
SYS_PKGS := espeak-ng sox chromium chromium-driver
sysdeps:
	@missing=""; for c in espeak-ng sox chromium chromedriver; do command -v $$c >/dev/null 2>&1 || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYS_PKGS) >/dev/null; \
	  else echo "note: install the Debian packages $(SYS_PKGS) for the speech and browser tests"; fi; \
	fi
	@[ -d tests/web/node_modules/playwright-core ] || npm ci --prefix tests/web --no-audit --no-fund --silent

demo: venv
	$(PY) -m lipsync_runner demo -o out/demo.mp4

test: venv sysdeps
	$(PY) -m pytest -q

bench: venv
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done
