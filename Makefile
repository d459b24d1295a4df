# make bench: the benchmark harness of issue 7 (bench/): every part, then docs/BENCHMARKS.md and
# the charts in docs/bench/. It needs root (the sshd test hosts create users) and installs
# ansible, sshpass and wrk from Debian packages when they are missing. Pass flags with e.g.
#   make bench BENCH_FLAGS='-n 50 -runs 3 -engine sqlite'
BENCH_FLAGS ?=

.PHONY: bench
bench:
	go run ./bench $(BENCH_FLAGS) all
