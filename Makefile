# unedit: model editing for unlearning on TOFU.  Two commands on a fresh machine:
#   make reproduce   (the whole study on the embedded default preset)
#   make test        (unit tests + the notebooks on the smoke preset)
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
PRESET  ?= default
SEEDS   ?= 0
FORCE   ?= 0
NOTEBOOKS ?= $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

.PHONY: setup test reproduce readme lab bench strip clean-runs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed   ## build .venv and install the package (editable, with test extras)

test: setup                  ## unit tests and a papermill run of every notebook on the smoke preset
	$(PY) -m pytest

reproduce: setup             ## notebooks 00.. in order into runs/$(PRESET)/ (FORCE=1 redoes cached work), then the README's results (default preset)
	$(PY) scripts/run_notebooks.py --preset $(PRESET) --seeds "$(SEEDS)" $(if $(filter 1,$(FORCE)),--force) $(NOTEBOOKS)
	$(if $(filter default,$(PRESET)),$(PY) scripts/write_readme_results.py --preset $(PRESET) --seeds "$(SEEDS)")

readme: setup                ## write the results tables into README.md from results/$(PRESET)/ (no re-run)
	$(PY) scripts/write_readme_results.py --preset $(PRESET) --seeds "$(SEEDS)"

lab: setup                   ## JupyterLab on notebooks/
	$(VENV)/bin/jupyter lab notebooks/

bench: setup                 ## timings of each stage on $(PRESET) (not a test); STAGES=reproduce times the whole study afresh
	$(PY) benchmarks/bench.py --preset $(PRESET) $(if $(STAGES),--stages $(STAGES))

strip: setup                 ## strip outputs from the committed notebooks
	$(VENV)/bin/nbstripout --keep-id notebooks/*.ipynb

clean-runs:
	rm -rf runs/
