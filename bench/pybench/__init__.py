"""The PyTorch side of the benchmarks: one module per theme, like benches/*.rs."""
