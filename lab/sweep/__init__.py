"""Sweeps over many labs: the matrix, kernels and kernel runs, benchmarks, flake hunting."""
