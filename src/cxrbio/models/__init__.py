"""MobileNetV2 + the study's head, the three training strategies, and weight sources."""
