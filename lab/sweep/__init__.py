"""Sweeps over many labs: the matrix, kernels and kernel runs, the catalogue run side
by side, benchmarks (bench, clusterbench, importbench), flake hunting."""
