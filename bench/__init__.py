"""Benchmarks (`make bench`): each bench/*_bench.py has a main() that writes bench/results/."""
