from nnctl.cli.main import run

run()
