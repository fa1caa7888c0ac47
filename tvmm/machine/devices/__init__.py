"""PC devices.  Each implements the ``Device`` protocol of ``base.py``."""
