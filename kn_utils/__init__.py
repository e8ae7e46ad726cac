"""kn_utils: knowledge neurons in ESM-2, the logic behind the study's notebooks."""
__version__ = "0.1.0"
