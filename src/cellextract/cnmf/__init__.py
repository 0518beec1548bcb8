"""CNMF / CNMF-E source extraction."""
