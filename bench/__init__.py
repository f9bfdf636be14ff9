"""micromix's benchmarks: one module per study, run from the repository root as
`python -m bench.NAME --help`; shared helpers in bench.common, results under results/."""
