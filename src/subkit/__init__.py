"""subkit: the last mile of code-submission ML competitions.

Importing this package never imports TensorFlow; the commands that need it import it
themselves.
"""

__version__ = "0.1.0"
