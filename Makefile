# Shortcuts; dev.py does the work and needs nothing but Python 3.11.
.PHONY: run test lint ci

run:
	python3 dev.py run

test:
	python3 dev.py test

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

ci:
	CI=true bash .ci/run
