"""cartrescue: win back abandoned shopping carts in batch.

Kept import-free so that ``cartrescue --help`` starts fast; import the modules you need.
"""

__version__ = "0.4.0"
