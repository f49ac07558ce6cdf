"""The ``grounding`` command line: ``main.py`` dispatches, one module per command does the work."""
