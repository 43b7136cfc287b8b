"""Data sets, raw-file downloads and on-device augmentation."""
