"""FindSpotsParams: the parameters of ``xtal find_spots`` (dials.find_spots)."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import XtalError
from ..params import StageParams, param
from .threshold import DispersionThreshold

ALGORITHMS = ("dispersion_extended", "dispersion")


@dataclass(frozen=True)
class FindSpotsParams(StageParams):
    """Parameters of ``xtal find_spots`` (dials.find_spots); names as DIALS's leaves."""

    threshold_algorithm: str = param("dispersion_extended", "threshold.algorithm: dispersion_extended (DIALS default) or dispersion",
                                     choices=ALGORITHMS, aliases=("threshold.algorithm",))
    gain: float | None = param(None, "threshold.dispersion.gain: flat detector gain (None: no gain map, as DIALS)", gt=0)
    kernel_size: tuple[int, ...] = param((3, 3), "threshold.dispersion.kernel_size: half-size of the local box (2k+1 pixels); one value or two (slow, fast)",
                                         ge=1)
    sigma_background: float = param(6.0, "threshold.dispersion.sigma_background: index-of-dispersion cut-off in standard deviations", ge=0)
    sigma_strong: float = param(3.0, "threshold.dispersion.sigma_strong: a strong pixel is this many standard deviations above the local mean", ge=0)
    min_local: int = param(2, "threshold.dispersion.min_local: minimum usable pixels in the box (≤ 0: the whole box)")
    global_threshold: float = param(0.0, "threshold.dispersion.global_threshold: strong pixels must exceed this value", ge=0)
    min_spot_size: int | None = param(None, "filter.min_spot_size: fewest pixels in a spot (None = Auto: 3 for pixel-array detectors, 6 otherwise)", ge=1)
    max_spot_size: int = param(1000, "filter.max_spot_size: most pixels in a spot", ge=1)
    max_separation: float | None = param(2.0, "filter.max_separation: largest peak-to-centroid distance (px); None switches the filter off", ge=0)
    max_strong_pixel_fraction: float = param(0.25, "filter.max_strong_pixel_fraction: more strong pixels than this fraction of an image is an error",
                                             ge=0, le=1)
    d_min: float | None = param(None, "filter.d_min: mask pixels at higher resolution than this (Å)", gt=0)
    d_max: float | None = param(None, "filter.d_max: mask pixels at lower resolution than this (Å)", gt=0)
    ice_rings: bool = param(False, "filter.ice_rings.filter: mask hexagonal-ice rings", aliases=("ice_rings.filter",))
    ice_rings_width: float = param(0.002, "filter.ice_rings.width: width of an ice ring in 1/d² (Å⁻²)", ge=0,
                                   aliases=("ice_rings.width",))
    border: int = param(0, "filter.border: mask this many pixels at the panel edges", ge=0)
    disable_parallax_correction: bool = param(False, "filter.disable_parallax_correction: simple px→mm for the resolution masks")
    region_of_interest: tuple[int, ...] | None = param(None, "region_of_interest: x0,x1,y0,y1 (px, end exclusive) to search", ge=0)
    scan_range: tuple[int, ...] = param((), "scan_range: first,last image numbers (inclusive) to search; several pairs allowed")
    force_2d: bool = param(False, "force_2d: label spots per image even in a rotation sweep")
    maximum_trusted_value: float | None = param(None, "maximum_trusted_value: override the panels' upper trusted value for spot finding")
    nproc: int = param(1, "mp.nproc: worker processes (blocks of images per process)", ge=1)

    def __post_init__(self):
        ks = tuple(self.kernel_size)
        if len(ks) not in (1, 2):
            raise XtalError(f"kernel_size={','.join(map(str, ks))}: give one or two integers", field="kernel_size")
        n_kernel = (2 * ks[0] + 1) * (2 * ks[-1] + 1)
        if self.min_local > 0 and not 1 < self.min_local <= n_kernel:
            raise XtalError(f"min_local={self.min_local}: must be ≤ 0 or between 2 and {n_kernel} (the box's pixels)",
                            field="min_local")
        if self.min_spot_size is not None and self.max_spot_size <= self.min_spot_size:
            raise XtalError(f"max_spot_size={self.max_spot_size} must be larger than min_spot_size={self.min_spot_size}",
                            field="max_spot_size")
        if self.d_min is not None and self.d_max is not None and self.d_min >= self.d_max:
            raise XtalError(f"d_min={self.d_min} must be smaller than d_max={self.d_max}", field="d_min")
        if self.region_of_interest is not None:
            r = self.region_of_interest
            if len(r) != 4 or not (r[0] < r[1] and r[2] < r[3]):
                raise XtalError("region_of_interest: give x0,x1,y0,y1 with 0 ≤ x0 < x1 and 0 ≤ y0 < y1",
                                field="region_of_interest")
        if len(self.scan_range) % 2:
            raise XtalError("scan_range: give pairs first,last of image numbers", field="scan_range")
        for a, b in zip(self.scan_range[::2], self.scan_range[1::2]):
            if b < a:
                raise XtalError(f"scan_range={a},{b}: must be in ascending order", field="scan_range")

    def threshold(self) -> DispersionThreshold:
        """The dispersion threshold these parameters describe."""
        ks = tuple(self.kernel_size)
        return DispersionThreshold(kernel_size=(ks[0], ks[-1]), sigma_background=self.sigma_background,
                                   sigma_strong=self.sigma_strong, global_threshold=self.global_threshold,
                                   min_local=self.min_local, gain=self.gain,
                                   extended=self.threshold_algorithm == "dispersion_extended")
