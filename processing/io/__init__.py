"""File formats: .expt JSON, .refl msgpack, CBF and NXmx/HDF5 images.

Importing the package registers the image formats with ``images.open_image_file``
(this is the one place that lists them); ``images`` itself knows no concrete format.
"""
from . import cbf, nxmx  # noqa: F401  (each registers its ImageFile class)
