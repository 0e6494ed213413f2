"""The digits dataset schema, shared by validation, training and the serving endpoint.

Kept free of heavy imports (no Prefect, no torch) because the BentoML service imports it too.
"""

IMAGE_SIDE = 8
FEATURE_COLUMNS: tuple[str, ...] = tuple(f"pixel_{row}_{col}" for row in range(IMAGE_SIDE) for col in range(IMAGE_SIDE))
N_FEATURES = len(FEATURE_COLUMNS)
TARGET_COLUMN = "target"
LABELS: tuple[int, ...] = tuple(range(10))
N_CLASSES = len(LABELS)
# scikit-learn's digits are 4x4-pixel block counts of a 32x32 bitmap: each value is 0..16.
PIXEL_MIN = 0
PIXEL_MAX = 16
ONNX_INPUT_NAME = "pixels"
ONNX_OUTPUT_NAME = "logits"
