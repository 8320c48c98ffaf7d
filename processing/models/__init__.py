"""Experimental models: beam, detector, goniometer, scan, crystal, experiment."""
from .beam import Beam
from .crystal import Crystal, format_with_sd
from .detector import Detector, Panel
from .experiment import Experiment, ExperimentList, ImageSource
from .goniometer import Goniometer
from .scan import Scan

__all__ = ["Beam", "Crystal", "Detector", "Experiment", "ExperimentList", "Goniometer",
           "ImageSource", "Panel", "Scan", "format_with_sd"]
