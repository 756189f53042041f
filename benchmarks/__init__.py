"""Speed and accuracy measurements. ``python -m benchmarks RUN`` regenerates every table from a build run."""
