"""Frames, rotations and the conversions between pixels, lab and reciprocal space."""
from .frames import (d_spacing, lab_to_s1, pixel_to_lab, pixel_to_s1, reciprocal_lattice_points,
                     s1_to_pixel, two_theta)

__all__ = ["d_spacing", "lab_to_s1", "pixel_to_lab", "pixel_to_s1", "reciprocal_lattice_points",
           "s1_to_pixel", "two_theta"]
