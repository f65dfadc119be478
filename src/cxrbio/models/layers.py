"""Names of the layers of cxrbio's network: the one place later stages look them up.

Embedding export cuts the network at ``GAP_LAYER``; SHAP rebuilds the head from ``HEAD_LAYERS``;
frozen-feature training splits it after ``PREPROCESS_LAYER`` inside ``BACKBONE_LAYER``.
"""

INPUT_LAYER = "image"
AUGMENT_LAYER = "augment"  # only in models trained with the augmentation inside (non-TensorFlow backends)
GREY_TO_RGB_LAYER = "grey_to_rgb"
PREPROCESS_LAYER = "mobilenet_preprocess"
BACKBONE_LAYER = "mobilenetv2"
GAP_LAYER = "gap"
HEAD_DENSE, HEAD_BN, HEAD_DROPOUT, HEAD_OUTPUT = "head_dense", "head_bn", "head_dropout", "head_softmax"
HEAD_LAYERS = (HEAD_DENSE, HEAD_BN, HEAD_DROPOUT, HEAD_OUTPUT)
