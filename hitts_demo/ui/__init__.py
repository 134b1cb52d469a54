"""The dashboard's Gradio side: one module per tab. Each builds its tab's components and, next to
them, ``outputs`` (the components in order) and ``show`` (a view dataclass of ``hitts_demo.views`` ->
values in that order), so a panel is added in one place. ``app.py`` assembles the header and tabs."""
