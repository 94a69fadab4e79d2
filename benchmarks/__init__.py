"""Speed benchmarks of the training loop (not part of the library): `python -m benchmarks.bench`."""
