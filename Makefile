# alignkit — two commands do all the set-up: `make demo` and `make test` (each creates/refreshes .venv).
PY := .venv/bin/python
QUICK ?=
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: venv lint demo test test-fast bench clean

venv:
	@bash scripts/setup_venv.sh

demo: venv
	$(PY) -m alignkit.cli demo $(if $(QUICK),--quick,) --output $(DEMO_OUT)
	$(if $(QUICK),,$(PY) scripts/demo_readme.py $(DEMO_OUT))

test: venv lint
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check alignkit tests benchmarks scripts

# unit tests only (no multi-process, no vLLM): seconds
test-fast: venv
	$(PY) -m pytest -q -ra -m "not slow" $(PYTEST_ARGS)

bench: venv
	$(PY) -m benchmarks.run --output benchmarks

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
