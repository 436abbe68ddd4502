# The two quick-start commands: `make walkthrough` (the main job) and `make test`.
.PHONY: walkthrough test lint setup benchmark
VENV := .venv/bin

setup:
	scripts/setup.sh

# The walkthrough runs examples/walkthrough.ipy in terminal IPython, then executes the quickstart
# notebook and writes it as $(HTML_DIR)/quickstart.html.  The widget state is not stored
# (store_widget_state=False): nbconvert then shows each panel's text/html fallback, which reads
# offline and on GitHub/nbviewer.  With the state stored, the HTML would load require.js and the
# widget manager from public CDNs and show nothing offline, and even online the panels could only
# switch tabs: there is no kernel behind a static page.
HTML_DIR ?= examples

walkthrough: setup
	$(VENV)/ipython --colors=nocolor examples/walkthrough.ipy
	$(VENV)/jupyter nbconvert --to html --execute --ExecutePreprocessor.timeout=600 \
		--ExecutePreprocessor.store_widget_state=False \
		--output-dir $(HTML_DIR) --output quickstart examples/quickstart.ipynb
	@echo "walkthrough: the executed notebook is $(HTML_DIR)/quickstart.html"

# The lint and type gates run first (seconds): ruff's rule set and mypy --strict, both written
# down in pyproject.toml; then the suite.
test:
	scripts/setup.sh browser
	$(VENV)/ruff check tensormagic
	$(VENV)/mypy
	$(VENV)/python -m pytest

lint:
	$(VENV)/ruff check tensormagic
	$(VENV)/mypy

benchmark: setup
	$(VENV)/python benchmarks/bench_tensorinfo.py
	$(VENV)/python benchmarks/bench_autograd.py
	$(VENV)/python benchmarks/bench_namespace.py
	$(VENV)/python benchmarks/bench_layers.py
	$(VENV)/python benchmarks/bench_auto_display.py
	$(VENV)/python benchmarks/bench_graph_drawing.py
