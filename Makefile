# Hartonomous: `make run` starts the platform, `make test` runs every test.
# Both set up what they need first (virtual environment, packages, services).

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt | sha256sum | cut -c1-12)

.PHONY: run test install lock bench clean-venv

install: $(STAMP)

$(STAMP): requirements.txt
	@scripts/install.sh "$(PYTHON)" "$(VENV)"
	@touch $@

run: install
	@scripts/run.sh

test: install
	@scripts/test.sh

lock:
	@rm -rf /tmp/hartonomous-lock && $(PYTHON) -m venv /tmp/hartonomous-lock
	/tmp/hartonomous-lock/bin/pip install -r requirements.in
	@{ echo "# Generated: pip freeze of a fresh venv made from requirements.in (torch pinned to the CPU build on disk)."; \
	   echo "# Regenerate with \`make lock\`."; \
	   /tmp/hartonomous-lock/bin/pip freeze | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/'; } > requirements.txt

bench: install
	$(PY) bench/web_latency.py

clean-venv:
	rm -rf $(VENV)
