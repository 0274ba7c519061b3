# rawbpf — `make help` lists the targets. Targets that touch the kernel need root; each installs what it needs.
SHELL      := /bin/bash
PYTHON     ?= python3
VENV       ?= .venv
VPY        := $(VENV)/bin/python
PIN_DIR    ?= /sys/fs/bpf/rawbpf
LOG_DIR    ?= $(CURDIR)/logs
PEERS_DIR  ?= $(abspath $(CURDIR)/../shared/peers)
CLANG      ?= clang
BPF_CFLAGS := -O2 -g -target bpf -Wall -Werror -D__TARGET_ARCH_x86 -I$(CURDIR)/programs/include
PYTEST_ARGS ?=
BENCH_ARGS ?=

# What each target needs from Debian and npm; add a package to the list of the target that needs it.
APT_RUN_PKGS   := python3-venv
APT_BUILD_PKGS := clang llvm bpftool libbpf-dev gcc make
# real servers and tools the tests start: the Claude CLI (npm, on nodejs), a browser, syslog, DNS, namespaces
APT_TEST_PKGS  := $(APT_RUN_PKGS) $(APT_BUILD_PKGS) util-linux iproute2 strace nodejs chromium rsyslog \
                  rsyslog-relp rsyslog-openssl openssl dnsmasq bind9-dnsutils
APT_BENCH_PKGS := $(APT_RUN_PKGS) $(APT_BUILD_PKGS) golang-go golang-github-cilium-ebpf-dev chromium
NPM_TEST_PKGS  := @anthropic-ai/claude-code
APT_GET        := DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -qq

# $(call apt,PKGS): install the Debian packages of PKGS that are not installed yet (nothing missing: no apt run)
define apt
	@missing=""; for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' \
	  || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  [ "$$(id -u)" = 0 ] || { echo "make: installing Debian packages:$$missing needs root" >&2; exit 1; }; \
	  echo "installing Debian packages:$$missing"; \
	  $(APT_GET) update && $(APT_GET) install -y --no-install-recommends $$missing >/dev/null \
	  || { echo "make: apt-get could not install:$$missing" >&2; exit 1; }; fi
endef

# $(call pip,EXTRAS,WHAT): install rawbpf (editable) with EXTRAS into .venv, quietly; the log on failure.
# compat mode: a path entry in a .pth file, not setuptools' import hook, which every start of rawbpf paid for
define pip
	@echo "setting up $(VENV): $(2)"
	@[ -x $(VPY) ] || $(PYTHON) -m venv $(VENV)
	@$(VPY) -m pip install -q --disable-pip-version-check --config-settings editable_mode=compat -e '.$(1)' \
	  > $(VENV)/pip.log 2>&1 \
	  || { tail -20 $(VENV)/pip.log >&2; echo "make: pip install failed (log: $(VENV)/pip.log)" >&2; exit 1; }
endef

.PHONY: help deps deps-run deps-test deps-build deps-bench venv venv-run mounts bpffs test-servers test unit kernel-test lint run demo \
	programs check-programs testdata check-testdata testdata-asm testdata-btf testdata-ringbuf bench stress zipapp \
	deps-kernels test-kernels clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

deps-run: ## Install the Debian packages `make run` needs, if missing (python3-venv)
	$(call apt,$(APT_RUN_PKGS))

deps: deps-test ## Install every Debian and npm package the tests need, if missing (root)

deps-test:
	$(call apt,$(APT_TEST_PKGS))
	@command -v npm >/dev/null || { echo "installing Debian packages: npm"; \
	  $(APT_GET) install -y --no-install-recommends npm >/dev/null; }
	@missing=""; for p in $(NPM_TEST_PKGS); do npm ls -g --depth=0 "$$p" >/dev/null 2>&1 \
	  || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing npm packages:$$missing"; \
	  npm install -g --no-fund --no-audit --loglevel=error $$missing >/dev/null; fi

deps-build: ## Install the Debian packages that build BPF objects, if missing (clang, llvm, bpftool, libbpf-dev)
	$(call apt,$(APT_BUILD_PKGS))

deps-bench: ## Install the Debian packages the benchmarks and their peers need, if missing (Go, cilium/ebpf)
	$(call apt,$(APT_BENCH_PKGS))

$(VENV)/.run: pyproject.toml
	$(call pip,,rawbpf and its run-time dependencies (pyelftools msgpack click))
	@touch $@

$(VENV)/.dev: pyproject.toml
	$(call pip,[dev],rawbpf with its test and lint tools)
	@touch $@ $(VENV)/.run

venv-run: deps-run $(VENV)/.run ## Create .venv with rawbpf and only what it needs at run time

venv: deps-run $(VENV)/.dev ## Create .venv with rawbpf and its test/lint tools

mounts: venv-run ## Mount bpffs and tracefs if missing (root; rawbpf also mounts them itself when it needs them)
	@$(VPY) -m rawbpf doctor --mount >/dev/null || $(VPY) -m rawbpf doctor --mount

bpffs: mounts

test-servers: tests/servers/node_modules/.package-lock.json ## Install the npm log servers the ship tests run (tests/servers)

tests/servers/node_modules/.package-lock.json: tests/servers/package.json tests/servers/package-lock.json | deps-test
	@echo "installing npm packages of tests/servers"
	@cd tests/servers && npm ci --no-audit --no-fund --loglevel=error >/dev/null

test: deps venv test-servers ## Run every test, unit and real-kernel, with no skips allowed (root)
	RAWBPF_REQUIRE_KERNEL=1 $(VPY) -m pytest -q $(PYTEST_ARGS)

unit: venv ## Run the tests that need no root and no compiler
	$(VPY) -m pytest -q tests/unit $(PYTEST_ARGS)

lint: venv ## ruff and mypy
	$(VPY) -m ruff check rawbpf tests tools
	$(VPY) -m mypy

run: venv-run ## Load the Claude monitor, log to LOG_DIR (./logs), pin under PIN_DIR (root; Ctrl-C stops, cleans up)
	@$(VPY) -m rawbpf load programs/claude_monitor.o --log-dir $(LOG_DIR) --pin-dir $(PIN_DIR)

demo: venv-run ## Start the monitor, run a scripted Claude-like workload, show rawbpf status/tail, stop (root)
	PYTHON=$(abspath $(VPY)) tools/demo.sh

programs: deps-build ## Rebuild programs/*.o from their C sources (clang 14, libbpf-dev headers); commit the objects
	CLANG=$(CLANG) tools/build_programs.sh programs

check-programs: deps-build ## Rebuild programs/*.o in two temp dirs; fail if a committed object is stale or path-dependent
	CLANG=$(CLANG) tools/check_programs.sh

zipapp: venv-run ## Build rawbpf.pyz, a single file that runs on hosts with only Python 3.9+
	$(VPY) tools/build_zipapp.py -o rawbpf.pyz

testdata: deps-build venv ## Rebuild the BPF test corpus in tests/data (clang 14, libbpf-dev headers, gcc); commit the objects
	CLANG=$(CLANG) PYTHON=$(abspath $(VPY)) tools/build_testdata.sh tests/data
	$(VPY) tools/gen_golden.py

check-testdata: deps-build venv ## Rebuild the test corpus in a temp dir; fail if a committed object is stale or path-dependent
	CLANG=$(CLANG) PYTHON=$(abspath $(VPY)) tools/check_testdata.sh

testdata-asm: deps-build venv ## Rebuild tests/data/asm/isa.o (clang 14, -mcpu=v3) and the disassembler's golden files
	cd tests/data/asm && $(CLANG) -O2 -g -target bpf -mcpu=v3 -Wall -Werror -fdebug-prefix-map=$$PWD=. \
	  -ffile-prefix-map=$$PWD=. -fno-ident -c isa.c -o isa.o
	$(VPY) tools/gen_golden.py

testdata-btf: deps-build ## Rebuild tests/data/btf objects (clang 14) and their bpftool raw-dump goldens
	cd tests/data/btf && for c in *.c; do $(CLANG) -O2 -g -target bpf -Wall -Werror \
	  -idirafter /usr/include/$$(gcc -dumpmachine) -fdebug-prefix-map=$$PWD=. -ffile-prefix-map=$$PWD=. \
	  -fno-ident -c $$c -o $${c%.c}.o || exit 1; done
	mkdir -p tests/data/btf/golden; for o in tests/data/*.o tests/data/btf/*.o tests/data/btf/*.btf; do \
	  g=tests/data/btf/golden/$$(basename $$o).raw; bpftool btf dump file $$o format raw > $$g 2>/dev/null || rm -f $$g; done

testdata-ringbuf: deps-build ## Rebuild tests/data/ringbuf objects (clang 14): ring/perf flood programs, decoder layouts
	cd tests/data/ringbuf && for c in *.c; do $(CLANG) -O2 -g -target bpf -Wall -Werror -D__TARGET_ARCH_x86 \
	  -idirafter /usr/include/$$(gcc -dumpmachine) -fdebug-prefix-map=$$PWD=. -ffile-prefix-map=$$PWD=. \
	  -fno-ident -c $$c -o $${c%.c}.o || exit 1; done

bench: deps-bench venv-run mounts test-servers ## Benchmarks vs peers (ring buffer, handler ns, connect overhead, load, exec storm, latency, shipping) → bench/results.json (root; fails if a figure cannot be measured)
	RAWBPF_PEERS=$(PEERS_DIR) $(VPY) -m tools.bench $(BENCH_ARGS)

stress: deps venv mounts ## Slow reliability suites: fuzzing, ring overflow, kill -9, fd/pin hygiene, hostile environments (root)
	RAWBPF_REQUIRE_KERNEL=1 $(VPY) -m pytest -q -m slow tests/stress $(PYTEST_ARGS)

# test-kernels: Debian 12's stock 6.1 (the newest linux-image-6.1.0-NN-amd64, unpacked under build/kernels, never
# installed as a host kernel) booted under qemu with TCG, and the running kernel directly; on each, the kernel
# tests and the monitor workload (tools/test_kernels.py says what runs). In the guest the tests that drive the
# real Claude Code CLI (marker claude_cli) are left out: they cover the same monitor programs as the monitor
# tests, which run there, and an emulated Claude CLI session takes minutes. The test files are split over two
# guests booted at once. Each kernel is stopped after TEST_KERNELS_TIMEOUT seconds (CI's 90 minutes hold
# make test and this); TEST_KERNELS_ARGS takes --no-host, --no-vm, --kernel SERIES, --guests N, or pytest paths
# for a subset.
APT_KERNELS_PKGS     := qemu-system-x86 busybox-static kmod
TEST_KERNELS_TIMEOUT ?= 3000
TEST_KERNELS_ARGS    ?=

deps-kernels: ## Install what test-kernels needs, if missing (qemu-system-x86, busybox-static, kmod; virtme-ng in .venv)
	$(call apt,$(APT_KERNELS_PKGS))

$(VENV)/.kernels: $(VENV)/.dev
	@echo "setting up $(VENV): virtme-ng (boots a kernel under qemu on this host's root filesystem)"
	@$(VPY) -m pip install -q --disable-pip-version-check 'virtme-ng>=1.42,<2' > $(VENV)/pip.log 2>&1 \
	  || { tail -20 $(VENV)/pip.log >&2; echo "make: pip install virtme-ng failed (log: $(VENV)/pip.log)" >&2; exit 1; }
	@touch $@

test-kernels: deps deps-kernels venv test-servers $(VENV)/.kernels ## Kernel tests + monitor workload on this kernel and on Debian 12's 6.1 under qemu TCG (no claude_cli tests there; root)
	$(VPY) tools/test_kernels.py --timeout $(TEST_KERNELS_TIMEOUT) $(TEST_KERNELS_ARGS)

clean: ## Remove build outputs (keeps committed objects)
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache bench/out
