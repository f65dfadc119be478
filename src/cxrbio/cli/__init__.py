"""The command line over the library: the Typer app, its printers and the console."""
