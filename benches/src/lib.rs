//! Criterion benchmarks of the workspace (see `benches/`).
