"""asv benchmark suite of fastmix (see bench/README.md and benchmarks.py)."""
