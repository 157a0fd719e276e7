"""Is a paid image usable? Its perceptual signals (``signals``), the verdict against the cell's earlier
images and its references (``judge``), and the paid-but-unusable images a team can claim back
(``costs.claims``). A verdict never changes what was billed."""

from nbpro_pipeline.usability.signals import ImageSignals, measure_image, measure_reduced
from nbpro_pipeline.usability.verdict import UNUSABLE, Usability

__all__ = ["UNUSABLE", "ImageSignals", "Usability", "measure_image", "measure_reduced"]
