"""The command line: typer app, commands, terminal views."""
