//! Benchmarks of oclayer side by side with its peers live in `benches/benches/`; this library is empty.
