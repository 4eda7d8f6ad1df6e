# cardwatch - one Makefile for build, run, test and bench.
#   make          build the processor and tools into build/
#   make run      install missing packages, start Redis + Apache Kafka
#                 (KAFKA=embedded: librdkafka's mock), run the demo
#                 (scripts/demo.sh)
#   make test     install missing packages, build, unit tests and
#                 end-to-end tests against real processes, each with the
#                 plain build and with an ASan+UBSan build
#   make bench    throughput benchmark against a plain librdkafka consumer,
#                 on Apache Kafka and on the mock side by side
#   make bench-latency  produce -> alert latency of cardwatch run on Apache
#                 Kafka at fixed rates, beside the broker's pass-through
#                 (scripts/bench_latency.sh)
#   make bench-feed  the issuer feed under wrk with 1,000 long polls held
#   make bench-load  gen + load of 1 M and 10 M cards: time, Redis B/card
#   make fuzz     libFuzzer targets for the pure decoders and parsers
#                 (clang): FUZZ_RUNS executions each (default 10^7), new
#                 inputs merged into tests/fuzz/corpus/ (scripts/fuzz.sh)
#   make coverage line and branch coverage of processor/ (gcc --coverage,
#                 gcovr) under the unit tests, the fuzz corpus replay and
#                 the end-to-end suite; per file and in total
#                 (scripts/coverage.sh; build/cov/coverage.txt)
#   make chaos    the broker failover scenario, then the chaos soak
#                 (tests/chaos): 3 brokers, Redis HA, 3 instances, seeded
#                 faults for CHAOS_SECONDS (default 600), checked
#                 independently; CHAOS_SEED replays a run

BUILD    ?= build
CC       ?= cc
OPT      ?= -O2
SAN      ?=
KAFKA    ?= apache
PKGS     := rdkafka hiredis libevent libevent_openssl libprotobuf-c \
            libcrypto libssl inih jansson zlib

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS  := -std=gnu11 -D_GNU_SOURCE -g $(OPT) $(SAN) -Wall -Wextra -Werror -Wshadow \
           -Wformat=2 -Wno-format-nonliteral -fno-strict-aliasing \
           -Iprocessor -I$(BUILD)/gen $(PKG_CFLAGS)
LDFLAGS := $(SAN)
LDLIBS  := $(PKG_LIBS) -lpthread -lm

GEN_C   := $(BUILD)/gen/cardwatch.pb-c.c
GEN_H   := $(BUILD)/gen/cardwatch.pb-c.h
GEN_O   := $(BUILD)/obj/cardwatch.pb-c.o
PAGE_C  := $(BUILD)/gen/feed_page.c
PAGE_O  := $(BUILD)/obj/feed_page.o
# The HTML reports of replay and cpp: their pages and Chart.js
# (web/package-lock.json, fetched by npm ci at build time) built into the
# binary.
CHARTJS := web/node_modules/chart.js/dist/chart.umd.js
REPORT_O := $(BUILD)/obj/gen_report_page.o $(BUILD)/obj/gen_report_chartjs.o \
            $(BUILD)/obj/gen_cpp_report_page.o $(BUILD)/obj/gen_chartjs_version.o
# gen_chartjs_version.o: its version as web/package-lock.json pins it
# (scripts/chartjs_version.py); the triage page loads the same copy from
# the feed at /assets/chart-<version>.umd.js.

SRC     := $(wildcard processor/*.c)
OBJ     := $(patsubst processor/%.c,$(BUILD)/obj/%.o,$(SRC))
LIB_OBJ := $(filter-out $(BUILD)/obj/main.o,$(OBJ)) $(GEN_O) $(PAGE_O) $(REPORT_O)

TOOLS_SRC := $(wildcard tools/*.c)
TOOLS     := $(patsubst tools/%.c,$(BUILD)/%,$(TOOLS_SRC))

UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all deps run test check-tree unit unit-asan e2e e2e-asan bench bench-latency bench-feed \
        bench-load bench-cpp fuzz chaos coverage \
        fuzz-replay fuzz-replay-asan prometheus-check deb clean format

all: $(BUILD)/cardwatch $(TOOLS) $(BUILD)/cardwatch-failalloc

deps:
	@scripts/install-deps.sh

$(GEN_C) $(GEN_H): proto/cardwatch.proto
	@mkdir -p $(BUILD)/gen
	@echo "  PROTO $<"
	@protoc-c --proto_path=proto --c_out=$(BUILD)/gen proto/cardwatch.proto

$(GEN_O): $(GEN_C) $(GEN_H)
	@mkdir -p $(BUILD)/obj
	@echo "  CC    $<"
	@$(CC) $(filter-out -Wshadow,$(CFLAGS)) -c $< -o $@

# The triage page, as a C array (scripts/embed.py: no xxd needed), with
# @CHARTJS_VERSION@ replaced by the pinned Chart.js version.
$(PAGE_C): web/triage.html scripts/embed.py web/package-lock.json
	@mkdir -p $(BUILD)/gen
	@echo "  EMBED $<"
	@python3 scripts/embed.py $< feed_page \
		CHARTJS_VERSION=$$(python3 scripts/chartjs_version.py) > $@

$(PAGE_O): $(PAGE_C)
	@mkdir -p $(BUILD)/obj
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) -c $< -o $@

# Chart.js exactly as web/package-lock.json pins it (scripts/fetch_web.sh:
# npm ci only when it is missing or another version).
$(CHARTJS): web/package.json web/package-lock.json scripts/fetch_web.sh
	@scripts/fetch_web.sh

$(BUILD)/gen/report_page.c: web/report.html scripts/embed.py
	@mkdir -p $(BUILD)/gen
	@echo "  EMBED $<"
	@python3 scripts/embed.py $< report_page > $@

$(BUILD)/gen/cpp_report_page.c: web/cpp_report.html scripts/embed.py
	@mkdir -p $(BUILD)/gen
	@echo "  EMBED $<"
	@python3 scripts/embed.py $< cpp_report_page > $@

$(BUILD)/gen/report_chartjs.c: $(CHARTJS) scripts/embed.py
	@mkdir -p $(BUILD)/gen
	@echo "  EMBED $<"
	@python3 scripts/embed.py $< report_chartjs > $@

$(BUILD)/gen/chartjs_version.c: web/package-lock.json scripts/chartjs_version.py
	@mkdir -p $(BUILD)/gen
	@echo "  GEN   $@"
	@python3 scripts/chartjs_version.py --c > $@

$(REPORT_O): $(BUILD)/obj/gen_%.o: $(BUILD)/gen/%.c
	@mkdir -p $(BUILD)/obj
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: processor/%.c $(GEN_H)
	@mkdir -p $(BUILD)/obj
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/cardwatch: $(BUILD)/obj/main.o $(LIB_OBJ)
	@echo "  LD    $@"
	@$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# Test and bench tools that only need librdkafka: they must build even
# when the processor does not, so the harness can still run.
STANDALONE_TOOLS := $(addprefix $(BUILD)/,embedded_kafka kafka_admin plain_consumer \
                      produce_file consume_all)
$(STANDALONE_TOOLS): $(BUILD)/%: tools/%.c tools/ktool.h
	@mkdir -p $(BUILD)
	@echo "  LD    $@"
	@$(CC) $(CFLAGS) $(LDFLAGS) $< $(LDLIBS) -o $@

$(BUILD)/%: tools/%.c $(LIB_OBJ)
	@mkdir -p $(BUILD)
	@echo "  LD    $@"
	@$(CC) $(CFLAGS) $(LDFLAGS) $< $(LIB_OBJ) $(LDLIBS) -o $@

# Unit test programs get the allocator wrapped (tests/unit/failalloc.h:
# a test can make the n-th allocation of our code fail); the processor,
# the tools and the fuzz targets do not.
FAILALLOC_O := $(BUILD)/tests/failalloc.o
WRAP_ALLOC  := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup

$(FAILALLOC_O): tests/unit/failalloc.c tests/unit/failalloc.h
	@mkdir -p $(@D)
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) -c $< -o $@

# cardwatch with the allocator wrapped and armed from the environment
# (tests/unit/failalloc_env.c): the end-to-end out-of-memory sweep fails
# each allocation site of a scenario in turn.
$(BUILD)/tests/failalloc_env.o: tests/unit/failalloc_env.c tests/unit/failalloc.h
	@mkdir -p $(@D)
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/cardwatch-failalloc: $(BUILD)/obj/main.o $(LIB_OBJ) $(FAILALLOC_O) \
                              $(BUILD)/tests/failalloc_env.o
	@echo "  LD    $@"
	@$(CC) $(LDFLAGS) $(WRAP_ALLOC) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJ) $(FAILALLOC_O)
	@mkdir -p $(BUILD)/tests
	@echo "  LD    $@"
	@$(CC) $(CFLAGS) $(LDFLAGS) $(WRAP_ALLOC) $< $(FAILALLOC_O) $(LIB_OBJ) \
	  $(LDLIBS) -lcmocka -o $@

# Unit tests of one build flavour; prints one line per test program.
unit: $(UNIT_BIN)
	@scripts/run-unit.sh $(UNIT_BIN)

# The same unit tests built with clang's AddressSanitizer + UBSan.
unit-asan:
	@$(MAKE) --no-print-directory BUILD=build/asan CC=clang OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  unit all

# End-to-end tests against real redis-server, the embedded Kafka and real
# cardwatch processes: once with the plain build, once with ASan+UBSan
# (a sanitizer report or a leak makes a process exit non-zero: the test
# fails).
# Left out of make test (E2E_SKIP= runs everything; make chaos runs it):
# the 100-second broker failover scenario - the short chaos run of make
# test stops and kills brokers and the controller 30-odd times per run
# with an exact check of every alert.
E2E_SKIP ?= test_broker_failures_lose_no_alert

# Run under ASan only (PLAIN_SKIP= runs them here too), to keep the two
# side-by-side runs of make test even: the corner-case modules, three
# long scenarios whose code the plain run covers elsewhere, and the
# in-process filter and window-state cache scenarios (the plain run's
# pipeline, rules and out-of-memory scenarios go through the same code).
PLAIN_SKIP ?= test_feed_edges test_redis_edges test_kafka_edges \
              test_security_failures_stop_start_up \
              test_default_pack_windows_concurrent_replays_and_namespaces \
              test_pipeline_through_sasl_ssl test_exposure_filter test_state_cache
# ... and common-point-of-purchase analysis (test_cpp: the same commands
# under ASan, where a memory error in the analysis would show).
PLAIN_SKIP += test_cpp

e2e: all
	@echo "== e2e (build) =="
	@python3 tests/e2e/run.py --build $(BUILD) \
	  $(foreach t,$(E2E_SKIP) $(PLAIN_SKIP),--skip $(t))

# Left out of the ASan run as well (ASAN_SKIP= runs everything): the
# harness's own tests (Python only), the triage page in Chromium (the
# feed's endpoints run under ASan in test_feed), the short chaos run (the
# consumer and producer reconnect paths run under ASan in the kill -9,
# rebalance and Kafka security scenarios) and the two re-processing
# scenarios of test_window_state (the same window-state code runs under
# ASan in its future-dated scenario, test_rules and test_redis_guard) -
# they keep make test under 20 minutes on 2 cores - and the out-of-memory
# sweep of `cardwatch run` (70-odd runs on Apache Kafka; the sweeps of the
# other commands and of the feed run under ASan), and the Prometheus scrape
# (it checks the rules against the service's series, not its memory).
ASAN_SKIP ?= $(E2E_SKIP) test_harness test_triage_page test_chaos_short_storm test_prometheus \
             test_reprocessing_after_kill_9_gives_the_first_answer \
             test_reprocessing_after_kill_9_keeps_suppression test_oom_run
# ... and the Debian package's install and purge (the release build's
# package on this machine; the ASan build is not one to package).
ASAN_SKIP += test_deb_installs_checks_and_purges
# ... and cpp's HTML report in Chromium (the page; the analysis runs
# under ASan in test_cpp, the page's rendering in unit-asan's test_timeline).
ASAN_SKIP += test_cpp_report_html_in_chromium

e2e-asan:
	@$(MAKE) --no-print-directory BUILD=build/asan CC=clang OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  all
	@echo "== e2e (ASan+UBSan build) =="
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  python3 tests/e2e/run.py --build build/asan $(foreach t,$(ASAN_SKIP),--skip $(t))

# The two end-to-end runs go side by side (scripts/e2e-both.sh): most of a
# scenario's time is spent waiting on processes (a broker starting, a
# condition), so on 2 cores the pair takes little more than the longer one.
NPROC := $(shell nproc 2>/dev/null || echo 2)
test: deps
	@python3 scripts/check_tree.py
	@$(MAKE) --no-print-directory -j$(NPROC) all
	@$(MAKE) --no-print-directory -j$(NPROC) unit
	@$(MAKE) --no-print-directory -j$(NPROC) unit-asan
	@$(MAKE) --no-print-directory fuzz-replay
	@$(MAKE) --no-print-directory fuzz-replay-asan
	@$(MAKE) --no-print-directory prometheus-check
	@scripts/e2e-both.sh $(MAKE)

# The alerting rules (deploy/prometheus): promtool checks the example
# config and the rules, and runs the rules' unit tests (each alert fires
# when it should and stays silent when it should).
prometheus-check:
	@scripts/check_prometheus.sh $(BUILD)/prometheus

# The Debian package: $(BUILD)/cardwatch_<version>_<arch>.deb from
# $(BUILD)/cardwatch, its man page made from the --help texts
# (scripts/make_deb.sh, scripts/make_man.py). tests/e2e/test_deb.py runs
# it, installs the package on this machine and purges it.
deb: $(BUILD)/cardwatch
	@scripts/make_deb.sh $(BUILD)

# The shape of processor/: the README's module table, function lengths,
# includes that run back up (scripts/check_tree.py; also in make test).
check-tree:
	@python3 scripts/check_tree.py

run: deps
	@$(MAKE) --no-print-directory all
	@KAFKA=$(KAFKA) scripts/demo.sh $(BUILD)

bench: deps
	@$(MAKE) --no-print-directory all
	@scripts/bench.sh $(BUILD)

# Latency on Apache Kafka: fixed produce rates, cardwatch's produce ->
# alert time beside the broker's pass-through (scripts/bench_latency.sh;
# BENCH_LAT_SECONDS, BENCH_LAT_RATES, BENCH_LAT_STEPS for a short run).
bench-latency: deps
	@$(MAKE) --no-print-directory all
	@scripts/bench_latency.sh $(BUILD)

# The issuer feed alone: wrk on GET /v1/alerts with 1,000 long polls held,
# beside /healthz; fan-out of one alert to them (scripts/bench_feed.sh).
bench-feed: deps
	@$(MAKE) --no-print-directory all
	@scripts/bench_feed.sh $(BUILD)

# What a breach costs in Redis: gen + load of BENCH_LOAD_CARDS cards
# (default 1 M and 10 M), time, rate and Redis memory per card
# (scripts/bench_load.sh); BENCH_LOAD_CARDS=100000000 is the 100 M breach.
bench-load: deps
	@$(MAKE) --no-print-directory all
	@scripts/bench_load.sh $(BUILD)

# Common-point-of-purchase analysis on simulated years: days from the
# first linked fraud until the breached merchant is the significant top
# suspect, the window estimate, and false suspects without a breach
# (scripts/bench_cpp.py; BENCH_CPP_TXNS, BENCH_CPP_SEEDS).
bench-cpp: deps
	@$(MAKE) --no-print-directory all
	@scripts/bench_cpp.py $(BUILD)

# The long chaos soak (tests/chaos/chaos.py, profile long); the report
# is printed and written to $(BUILD)/chaos-report.json. A failing seed
# replays with CHAOS_SEED=<seed>.
CHAOS_SECONDS ?= 600
CHAOS_SEED    ?=
chaos: deps
	@$(MAKE) --no-print-directory all
	@echo "== the broker failover scenario (left out of make test) =="
	@python3 tests/e2e/run.py --build $(BUILD) --only test_broker_failures_lose_no_alert
	@echo "== the chaos soak =="
	@python3 tests/chaos/chaos.py --build $(BUILD) --profile long \
	  --duration $(CHAOS_SECONDS) $(if $(CHAOS_SEED),--seed $(CHAOS_SEED)) \
	  --report $(BUILD)/chaos-report.json

# Coverage: a gcc --coverage -O0 build in COV_BUILD; unit tests, corpus
# replay and every end-to-end scenario (the broker failover one included);
# COV_E2E=0 for unit tests and replay only, COV_ONLY="test ..." for some
# scenarios. Exits non-zero when a test failed (the figures still print).
COV_BUILD ?= build/cov
coverage: deps
	@scripts/coverage.sh $(COV_BUILD)

include tests/fuzz/fuzz.mk

# The fuzz targets (tests/fuzz/fuzz.mk): libFuzzer + ASan + UBSan builds
# in FUZZ_BUILD, source-coverage builds for the line figures in
# FUZZ_BUILD-cov, then scripts/fuzz.sh runs each (FUZZ_RUNS, FUZZ_TARGETS).
FUZZ_BUILD ?= build/fuzz
fuzz: deps
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=clang OPT=-O1 \
	  SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  FUZZ_MAIN= FUZZ_LINK=-fsanitize=fuzzer fuzzers
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD)-cov CC=clang OPT=-O1 \
	  SAN="-fprofile-instr-generate -fcoverage-mapping" fuzzers
	@scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_BUILD)-cov

# Corpus replay: every file of tests/fuzz/corpus/<target>/ and
# tests/fuzz/seeds/<target>/ once through each target, without libFuzzer
# (tests/fuzz/replay_main.c); plain, and with ASan+UBSan like unit-asan.
fuzz-replay: $(FUZZ_BIN)
	@tests/fuzz/replay.sh $(BUILD) $(FUZZ_BIN)

fuzz-replay-asan:
	@$(MAKE) --no-print-directory BUILD=build/asan CC=clang OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  fuzz-replay

format:
	clang-format -i processor/*.c processor/*.h tools/*.c tests/unit/*.c

clean:
	rm -rf build

-include $(OBJ:.o=.d)
