"""Benchmarks: each bench_*.py module has main(out_dir) and writes JSON results."""
