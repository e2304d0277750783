"""One module per command (or command group); ``cartrescue.cli`` only wires them."""
