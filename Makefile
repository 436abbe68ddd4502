# The two quick-start commands: `make walkthrough` (the main job) and `make test`.
.PHONY: walkthrough test setup benchmark
VENV := .venv/bin

setup:
	scripts/setup.sh

walkthrough: setup
	$(VENV)/ipython --colors=nocolor examples/walkthrough.ipy
	$(VENV)/jupyter nbconvert --to html --execute --ExecutePreprocessor.timeout=600 \
		--output quickstart.html examples/quickstart.ipynb
	@echo "walkthrough: the executed notebook is examples/quickstart.html"

test:
	scripts/setup.sh browser
	$(VENV)/python -m pytest

benchmark: setup
	$(VENV)/python benchmarks/bench_tensorinfo.py
