"""Data: discovery of the input layouts, image IO, the study's preprocessing, QC,
duplicates, patient-grouped folds, the phantom data set and the tf.data pipeline."""
