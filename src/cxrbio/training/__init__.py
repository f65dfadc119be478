"""Cross-validated training of one fold: the trainer, its data, the frozen-feature cache."""
