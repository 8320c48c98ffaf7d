"""X-ray diffraction processing for many crystals: models, file formats and stages (no Django here)."""
