# rawbpf — `make help` lists the targets. Targets that touch the kernel need root (sudo make …).
SHELL      := /bin/bash
PYTHON     ?= python3
VENV       ?= .venv
VPY        := $(VENV)/bin/python
LOG_DIR    ?= $(CURDIR)/logs
CLANG      ?= clang
BPF_CFLAGS := -O2 -g -target bpf -Wall -Werror -D__TARGET_ARCH_x86 -I$(CURDIR)/programs/include
APT_PKGS   := clang llvm bpftool libbpf-dev gcc make nodejs npm strace chromium rsyslog rsyslog-relp \
              rsyslog-openssl openssl
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help deps venv bpffs test-servers test unit kernel-test lint run demo programs check-programs testdata check-testdata testdata-asm testdata-btf testdata-ringbuf bench stress zipapp clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

deps: ## Install Debian build/test packages if missing (clang, llvm, bpftool, libbpf-dev, gcc)
	@missing=""; for p in $(APT_PKGS); do command -v $$p >/dev/null || dpkg -s $$p >/dev/null 2>&1 || \
	  missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	@command -v claude >/dev/null || { echo "installing: @anthropic-ai/claude-code (npm)"; \
	  npm install -g -q @anthropic-ai/claude-code >/dev/null; }

$(VPY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	@touch $(VPY)

venv: $(VPY) ## Create .venv with rawbpf and its test/lint tools

bpffs: ## Mount bpffs at /sys/fs/bpf if it is not mounted (root)
	@$(VPY) -m rawbpf doctor --mount-bpffs >/dev/null 2>&1 || mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

test-servers: tests/servers/node_modules/.package-lock.json ## Install the npm log servers the ship tests run (tests/servers)

tests/servers/node_modules/.package-lock.json: tests/servers/package.json tests/servers/package-lock.json
	cd tests/servers && npm ci --no-audit --no-fund --loglevel=error

test: deps venv bpffs test-servers ## Run every test, unit and real-kernel, with no skips allowed (root)
	RAWBPF_REQUIRE_KERNEL=1 $(VPY) -m pytest -q $(PYTEST_ARGS)

unit: venv ## Run the tests that need no root and no compiler
	$(VPY) -m pytest -q tests/unit $(PYTEST_ARGS)

lint: venv ## ruff and mypy
	$(VPY) -m ruff check rawbpf tests tools
	$(VPY) -m mypy

run: venv bpffs ## Load the Claude monitor and log to ./logs (root; Ctrl-C stops and cleans up)
	$(VPY) -m rawbpf load programs/claude_monitor.o --log-dir $(LOG_DIR)

demo: venv bpffs ## Start the monitor, run a scripted Claude-like workload, show rawbpf status/tail, stop (root)
	PYTHON=$(abspath $(VPY)) tools/demo.sh

programs: ## Rebuild programs/*.o from their C sources (clang 14, libbpf-dev headers); commit the objects
	CLANG=$(CLANG) tools/build_programs.sh programs

check-programs: ## Rebuild programs/*.o in two temp dirs; fail if a committed object is stale or path-dependent
	CLANG=$(CLANG) tools/check_programs.sh

zipapp: venv ## Build rawbpf.pyz, a single file that runs on hosts with only Python 3.9+
	$(VPY) tools/build_zipapp.py -o rawbpf.pyz

testdata: ## Rebuild the BPF test corpus in tests/data (clang 14, libbpf-dev headers, gcc); commit the objects
	CLANG=$(CLANG) PYTHON=$(PYTHON) tools/build_testdata.sh tests/data
	$(PYTHON) tools/gen_golden.py

check-testdata: ## Rebuild the test corpus in a temp dir; fail if a committed object is stale or path-dependent
	CLANG=$(CLANG) PYTHON=$(PYTHON) tools/check_testdata.sh

testdata-asm: ## Rebuild tests/data/asm/isa.o (clang 14, -mcpu=v3) and the disassembler's golden files
	cd tests/data/asm && $(CLANG) -O2 -g -target bpf -mcpu=v3 -Wall -Werror -fdebug-prefix-map=$$PWD=. \
	  -ffile-prefix-map=$$PWD=. -fno-ident -c isa.c -o isa.o
	$(PYTHON) tools/gen_golden.py

testdata-btf: ## Rebuild tests/data/btf objects (clang 14) and their bpftool raw-dump goldens
	cd tests/data/btf && for c in *.c; do $(CLANG) -O2 -g -target bpf -Wall -Werror \
	  -idirafter /usr/include/$$(gcc -dumpmachine) -fdebug-prefix-map=$$PWD=. -ffile-prefix-map=$$PWD=. \
	  -fno-ident -c $$c -o $${c%.c}.o || exit 1; done
	mkdir -p tests/data/btf/golden; for o in tests/data/*.o tests/data/btf/*.o tests/data/btf/*.btf; do \
	  g=tests/data/btf/golden/$$(basename $$o).raw; bpftool btf dump file $$o format raw > $$g 2>/dev/null || rm -f $$g; done

testdata-ringbuf: ## Rebuild tests/data/ringbuf objects (clang 14): ring/perf flood programs, decoder layouts
	cd tests/data/ringbuf && for c in *.c; do $(CLANG) -O2 -g -target bpf -Wall -Werror -D__TARGET_ARCH_x86 \
	  -idirafter /usr/include/$$(gcc -dumpmachine) -fdebug-prefix-map=$$PWD=. -ffile-prefix-map=$$PWD=. \
	  -fno-ident -c $$c -o $${c%.c}.o || exit 1; done

bench: venv bpffs ## Benchmarks vs peers (ring buffer, handler ns, connect overhead, load, exec storm, latency) → bench/results.json (root)
	$(VPY) -m tools.bench $(BENCH_ARGS)

stress: venv bpffs ## Slow reliability suites: fuzzing, ring overflow, kill -9, fd/pin hygiene, hostile environments (root)
	RAWBPF_REQUIRE_KERNEL=1 $(VPY) -m pytest -q -m slow tests/stress $(PYTEST_ARGS)

clean: ## Remove build outputs (keeps committed objects)
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache bench/out
