"""HiTTs Studio inference package: ONNX Runtime only (never imports torch).

Modules, in data-flow order:

* ``manifest``     reads and validates ``manifest.json`` against the ONNX session (``ExportError``)
* ``preprocess``   any upload -> upright RGB uint8, with byte / pixel caps (``InputError``)
* ``predictor``    ``Predictor(export_dir).predict(rgb) -> Prediction`` (one session call)
* ``postprocess``  resizing back to the image, pseudo labels, raw-output encodings
* ``visualize``    colour maps, overlays, legends, heatmaps (numpy + Pillow)
* ``pointcloud``   back-projection, GLB and PLY writers
* ``downloads``    the raw-output zip and per-session temporary folders
* ``plots``        plotly figures (affinity, tokens, pseudo-label curves, metrics, learning curves)
* ``gallery``      synthetic samples and nyuv2-mini frames with ground truth
* ``records``      run records (``exports/runs``) and the paper's tables
* ``service``      ``Studio``: the models (fp32 / fp16 sessions), the gallery and ``analyze``
* ``views/``       one module per tab: kept ``Analysis`` -> a frozen dataclass (no Gradio), plus ``api``
                   (``predict``) and ``batch`` (``predict_batch``)
* ``ui/``          one Gradio module per tab: its components, outputs and events; ``app.py`` assembles them

Names shared with the trainer (metric directions, Delta_MTL metric sets, methods, manifest version)
come from the torch-free ``hitts_schema`` package.
"""

__version__ = "0.1.0"
