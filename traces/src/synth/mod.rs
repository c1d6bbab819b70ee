//! Synthetic workload generators (`synth`), filled by issue 4.
