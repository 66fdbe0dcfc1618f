# rnnkit: the common commands. Each target creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench clean chromium

$(STAMP): pyproject.toml requirements.lock
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rnnkit demo

# The tests run in TEST_JOBS processes (pytest-xdist; each test uses one thread), then
# those marked serial (jobs of several processes, load) alone. Plain `pytest` runs all.
TEST_JOBS ?= 2
test: $(STAMP) chromium
	@status=0; \
	$(BIN)/python -m pytest -n $(TEST_JOBS) -m "not serial" || status=$$?; \
	$(BIN)/python -m pytest -m serial || status=$$?; \
	exit $$status

# The browser test drives Debian's chromium (never a downloaded one): install it when missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "make: chromium is missing (needed by tests/test_serve_browser.py): apt-get install -y chromium"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; }

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench scripts
	$(BIN)/ruff check --fix src tests bench scripts

bench: $(STAMP)
	$(BIN)/python bench/layers.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
