"""Disease or hospital? Checks of whether something other than the lungs predicts the label.

:mod:`cxrbio.confounding.acquisition` -- a classifier on how the images were acquired and
exported (size, aspect, bit depth, format, compression, padding), never on their content;
:mod:`cxrbio.confounding.permutation` -- the patient-grouped permutation null they are judged by.
"""
