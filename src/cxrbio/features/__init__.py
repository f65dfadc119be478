"""Per-image feature code, arrays in and arrays out: embeddings, lung masks and segmentation, radiomics."""
