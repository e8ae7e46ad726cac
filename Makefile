# The study's entry points. `make study` runs the whole study (both profiles); `make test` runs the tests (both set up .venv first).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# MMseqs2 (the identity split) and Chromium (the book's browser test) come from Debian's packages: as root, else sudo.
SUDO ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The offline mirror of the upstream data files, when one sits beside the repository (as in CI).
KN_MIRROR ?= $(abspath $(wildcard ../shared/mirror))
export KN_MIRROR

.PHONY: install study homology splits seeds quick test unit notebooks nbval-update benchmarks book slides clean-runs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	command -v mmseqs >/dev/null || $(SUDO) apt-get install -y -q mmseqs2 >/dev/null \
		|| { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q mmseqs2 >/dev/null; } \
		|| { echo "MMseqs2 (mmseqs) is needed by the identity split: apt-get install mmseqs2, or conda install -c bioconda mmseqs2"; exit 1; }
	command -v chromium >/dev/null || $(SUDO) apt-get install -y -q chromium >/dev/null \
		|| echo "Chromium could not be installed (apt-get install chromium): the browser test of the book will be skipped"
	touch $@

install: $(VENV)/.installed  ## create .venv with kn_utils and its dependencies

JOBS ?= 1
study: install  ## every executed notebook from its source (notebooks/NN_name.py): the full and full-accession records (01-06 of each, then 07, which compares them), the positive control and the ffn family on the full model (full-ffn), published, then the quick copies nbval checks; JOBS=2 runs two profiles side by side
	$(PY) -m kn_utils study --jobs $(JOBS) --publish
	$(PY) -m kn_utils run --profile full-ffn --publish
	$(MAKE) notebooks

homology: install  ## the homology-aware re-run (split by UniProt accession), then notebook 07 of the full run again to compare
	$(PY) -m kn_utils run --profile full-accession --publish
	$(PY) -m kn_utils run --profile full --from 07 --publish

splits: install  ## notebooks 01-02 with the identity splits (MMseqs2 clusters at 50 % and 30 %), then notebook 07 of full, which tabulates every split
	$(PY) -m kn_utils run --profile full-identity50 --to 02 --publish
	$(PY) -m kn_utils run --profile full-identity30 --to 02 --publish
	$(PY) -m kn_utils run --profile full --from 07 --publish

seeds: install  ## the study with training seeds 1 and 2 on the record's split (q/k/v, then ffn; each published when done), then every claim over the three seeds
	$(PY) -m kn_utils run --profile full-seed1 --publish
	$(PY) -m kn_utils run --profile full-seed1-ffn --to 05 --publish
	$(PY) -m kn_utils run --profile full-seed2 --publish
	$(PY) -m kn_utils run --profile full-seed2-ffn --to 05 --publish
	$(PY) -m kn_utils claims --publish

quick: install  ## run the notebooks on the quick profile (runs/quick/)
	$(PY) -m kn_utils run --profile quick

test: install  ## unit tests, nbval regression check of the notebooks at quick size, recorded-value checks
	$(PY) -m pytest --nbval --nbval-sanitize-with tests/nbval/sanitize.cfg --nbval-current-env tests

unit: install  ## unit tests only
	$(PY) -m pytest tests -k "not nbval"

notebooks: install  ## regenerate the quick copies nbval checks (tests/nbval/) from the notebook sources, after editing one
	$(PY) -m kn_utils run --profile quick --output-dir tests/nbval --rerun

nbval-update: notebooks  ## the old name of `make notebooks`

benchmarks: install  ## speed figures (medians of several runs, ratio to a baseline measured in the same run)
	$(PY) benchmarks/finetune.py
	$(PY) benchmarks/inference.py

book: install  ## the website of the committed record (Jupyter Book, nothing executed): build/book/_build/html
	$(PY) -m kn_utils book

slides: install  ## the lab-meeting deck of the committed record (reveal.js, opens offline): build/slides/html/index.html
	$(PY) -m kn_utils slides

clean-runs:
	rm -rf runs/
