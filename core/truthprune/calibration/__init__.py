"""Calibration data: the reference windowing rules (documents, concatenated records, padded singles) and mixing of sources."""
