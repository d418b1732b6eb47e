"""Kernels: plain numpy functions applied to one chunk, and how their partials combine."""
