"""The judging room: pure comparison of outputs with goldens, tolerances, diagnosis and verdicts.

NumPy only: nothing here imports torch, onnx or onnxruntime."""
