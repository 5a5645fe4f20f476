"""Speed and memory benchmarks, one module each, printing a table of measures against their goals.

Run one from the repository root as a module, `python -m benchmarks.bench_core`; `make bench`
runs them all. They are not part of the test run.
"""
