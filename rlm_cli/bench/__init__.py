"""Benchmark support: a simulated model server speaking the vendors' wire formats."""
