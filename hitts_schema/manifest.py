"""The export manifest's schema: its version and the file names of an export folder."""

MANIFEST_FORMAT_VERSION = 1
"""``format_version`` written by the trainer's export and required by the dashboard."""

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
MODEL_FP16_FILE = "model_fp16.onnx"
