"""Models in and out of nnctl: ONNX export, Keras import and export (optional extras, imported on demand)."""
