# tests/fuzz/fuzz.mk - builds of the fuzz targets (included by the Makefile).
#
# Each tests/fuzz/fuzz_NAME.c is linked with the library objects of the
# build it belongs to ($(LIB_OBJ)), so a target never misses a module:
#   - with libFuzzer's main: `make fuzz` (BUILD=build/fuzz, FUZZ_MAIN=
#     empty, FUZZ_LINK=-fsanitize=fuzzer);
#   - with tests/fuzz/replay_main.c in any other build, which runs the
#     target once on each file given (`make fuzz-replay`, `make test`);
#   - the same with clang's source coverage (build/fuzz-cov) for the line
#     figures of `make fuzz`.
# fuzz_reader gets reader.c built with a 64-byte buffer and a 16-byte gzip
# input buffer, so records straddle refills and compactions all the time.

FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN  := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzzers/%,$(FUZZ_SRC))
FUZZ_MAIN ?= tests/fuzz/replay_main.c
FUZZ_LINK ?=
FUZZ_OBJ   = $(LIB_OBJ)

READER_SMALL   := -DREADER_BUF_SIZE=64 -DREADER_IN_SIZE=16
READER_SMALL_O := $(BUILD)/obj/reader_small.o

.PHONY: fuzzers

fuzzers: $(FUZZ_BIN)

$(READER_SMALL_O): processor/reader.c $(GEN_H)
	@mkdir -p $(@D)
	@echo "  CC    $< (small buffers)"
	@$(CC) $(CFLAGS) $(READER_SMALL) -MMD -MP -c $< -o $@

$(BUILD)/fuzzers/fuzz_reader: FUZZ_EXTRA := $(READER_SMALL)
$(BUILD)/fuzzers/fuzz_reader: FUZZ_OBJ = \
  $(filter-out $(BUILD)/obj/reader.o,$(LIB_OBJ)) $(READER_SMALL_O)
$(BUILD)/fuzzers/fuzz_reader: $(READER_SMALL_O)

$(BUILD)/fuzzers/%: tests/fuzz/%.c $(FUZZ_MAIN) $(LIB_OBJ)
	@mkdir -p $(@D)
	@echo "  LD    $@"
	@$(CC) $(CFLAGS) $(FUZZ_EXTRA) $(LDFLAGS) $(FUZZ_LINK) $< $(FUZZ_MAIN) \
	  $(FUZZ_OBJ) $(LDLIBS) -o $@

-include $(READER_SMALL_O:.o=.d)
