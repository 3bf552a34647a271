"""The benchmarks of issue #6 (``make bench``, ``make bench-quick``); see bench/README.md."""
