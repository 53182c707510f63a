# make setup   create .venv and install the pinned dependencies (quick when nothing changed)
# make test    run the test suite (CPU only; CUDA tests are skipped without a GPU)
# make bench   print the speed and memory benchmarks
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.dubber-setup

.PHONY: setup test bench clean

setup: $(STAMP)

$(STAMP): setup.cfg constraints.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# torch first and alone: an unpinned torch would pull several GB of CUDA packages.
	@# A torch already in the venv (a CUDA build, say) is kept.
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	@# taming-transformers declares torchvision and pytorch-lightning, which we never import
	@# (only its Encoder/Decoder and VectorQuantizer, which need torch and numpy): no deps.
	$(PY) -m pip install -q --no-deps -c constraints.txt taming-transformers
	@# invisible-watermark (the watermark tests' reference) declares torch: no deps either;
	@# what its dwtDctSvd needs (PyWavelets, pillow, opencv, numpy) comes with [test].
	$(PY) -m pip install -q --no-deps -c constraints.txt invisible-watermark
	@touch $(STAMP)

test: setup
	$(PY) -m pytest -q -ra

bench: setup
	$(PY) -m dubber.bench

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
