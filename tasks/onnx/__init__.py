"""ONNX stage: torch-free runtime (bentos import it), export + parity, compression."""
