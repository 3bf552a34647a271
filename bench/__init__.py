"""The benchmarks (``make bench``, ``make bench-quick``); see bench/README.md."""
