"""willie: learn *Steamboat Willie* (1928) and generate new scenes in its style."""

__version__ = "0.1.0"
