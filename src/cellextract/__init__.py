"""cellextract: calcium-imaging cell extraction (NoRMCorre, CNMF/CNMF-E, OASIS, evaluation)."""

__version__ = "0.1.0"
