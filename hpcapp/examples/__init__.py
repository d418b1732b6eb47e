"""Example user kernels, shipped so the README's example runs as written."""
