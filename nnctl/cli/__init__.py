"""The command line: one small module per verb; ``main.run`` is the console script."""
