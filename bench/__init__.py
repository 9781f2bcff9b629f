"""Benchmarks, run by hand or as a CI smoke; `bench.bench_graphs` is loaded by bench workers."""
