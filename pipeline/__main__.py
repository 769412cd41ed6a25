from pipeline.app import cli

cli()
