# The README's two commands. Both set up whatever is missing (idempotent, quick when done).
.PHONY: run test lint

CONFIG ?= config/pipeline.yaml

run:
	@scripts/setup.sh run
	.venv/bin/collector --config $(CONFIG)

test:
	@scripts/setup.sh test
	@scripts/test.sh $(ARGS)

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
