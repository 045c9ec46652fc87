"""The reports room: terminal, JSON, JUnit, Markdown, HTML, merge, probes and show.

Reports read result value objects only: nothing here imports torch, onnx or onnxruntime."""
