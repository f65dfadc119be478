"""Runtime plumbing: worker pools, progress and logging, timing, the Keras backend, quiet native output."""
