"""The benchmarks ``python -m benchmarks RUN`` runs on a build: one module per table, each with
``run(build: BuildRun, quick: bool) -> Table``."""
