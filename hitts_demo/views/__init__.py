"""One module per dashboard tab: plain functions from the kept ``Analysis`` (or the run records) to a
frozen dataclass the tab renders. No Gradio here (``hitts_demo.ui`` builds the components), so each
view is tested without a browser or a server."""
