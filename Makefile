# Every target builds with go.mod's toolchain line (go1.27.3; the machines' Go 1.26.8 has
# standard-library vulnerabilities the code calls): a go that starts with GOTOOLCHAIN=local
# ignores that line, so it is exported here, and the go command fetches that release from the
# module proxy once.
GOTOOLCHAIN := $(shell sed -n 's/^toolchain[[:space:]]\{1,\}\(go[0-9.]*\)[[:space:]]*$$/\1/p' go.mod)
ifeq ($(GOTOOLCHAIN),)
$(error go.mod has no toolchain line)
endif
export GOTOOLCHAIN

# make bench: the benchmark harness of issue 7 (bench/, a module of its own): every part, then
# docs/BENCHMARKS.md and the charts in docs/bench/. It needs root (the sshd test hosts create
# users) and installs ansible, sshpass and wrk from Debian packages when they are missing. Pass
# flags with e.g.
#   make bench BENCH_FLAGS='-n 50 -runs 3 -engine sqlite'
BENCH_FLAGS ?=

.PHONY: bench
bench:
	$(GO) -C bench run . $(BENCH_FLAGS) all

# Long reliability runs of issue 9 (docs/RELIABILITY.md). `go test ./...` runs short forms of
# both; these run them at length. They need root and openssh-server, like the sshd tests.
#
#   make chaos                       crash rounds: 20 sshd hosts + 3 faulty, 20 SIGKILL rounds, on
#                                    SQLite, then on PostgreSQL (needs KPS_TEST_POSTGRES)
#   make chaos CHAOS_ENGINE=sqlite   one engine only (sqlite, postgres or both)
#   make chaos CHAOS_ROUNDS=30       more rounds (also CHAOS_TASKS, CHAOS_HOSTS)
#   make soak                        10-minute mixed load, the first 30% on a -race build
#   make soak SOAK_DURATION=30m      longer (also SOAK_RACE, SOAK_HOSTS, SOAK_RATE)

GO ?= go

CHAOS_ROUNDS ?= 20
CHAOS_TASKS ?= 4000
CHAOS_HOSTS ?= 20
CHAOS_ENGINE ?= both

SOAK_DURATION ?= 10m
SOAK_RACE ?= 0.3
SOAK_HOSTS ?= 4
SOAK_RATE ?= 20
SOAK_SUMMARY ?= soak-summary.txt

.PHONY: chaos soak

chaos:
	KPS_REQUIRE_SSHD=1 KPS_CHAOS_ROUNDS=$(CHAOS_ROUNDS) KPS_CHAOS_TASKS=$(CHAOS_TASKS) KPS_CHAOS_HOSTS=$(CHAOS_HOSTS) \
		KPS_CHAOS_ENGINE=$(CHAOS_ENGINE) $(GO) test -count=1 -timeout 90m -run '^TestChaosCrashRounds$$' -v ./e2e

soak:
	KPS_REQUIRE_SSHD=1 KPS_SOAK_DURATION=$(SOAK_DURATION) KPS_SOAK_RACE=$(SOAK_RACE) KPS_SOAK_HOSTS=$(SOAK_HOSTS) \
		KPS_SOAK_RATE=$(SOAK_RATE) KPS_SOAK_SUMMARY=$(CURDIR)/$(SOAK_SUMMARY) \
		$(GO) test -count=1 -timeout 120m -run '^TestSoak$$' -v ./e2e
