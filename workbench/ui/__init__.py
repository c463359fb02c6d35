"""What the app and the notebooks draw: plotly figures (:mod:`~workbench.ui.charts`) and the live notebook watcher
(:mod:`~workbench.ui.notebook`). The only part of the package that imports plotly or ipywidgets (an import-linter
contract checks it); the rest of the core imports no UI library."""
