"""The explain panel: one picture of what the clustering did (input, colour only, colour + position, noise)."""

from __future__ import annotations

import numpy as np

from gpuseg._core.arrays import to_host
from gpuseg.options import SegmentOptions
from gpuseg.params import PARAMS
from gpuseg.segmentation.labels import overlay, to_rgb8
from gpuseg.segmentation.pictures import noise_map, panel
from gpuseg.segmentation.pipeline import SegmentResult, segment


def explain_panel(result: SegmentResult, *, device: str = "auto") -> np.ndarray:
    """One picture that shows what the clustering did: the input, the colour-only result, the colour +
    position result (the parameters of ``result``, with the default xy_scale where it had none) and its noise.
    The half that ``result`` lacks is segmented on ``device`` with the automatic engine.

    Returns
    -------
    ndarray of shape (H, W, 3), uint8
        The four captioned pictures, two a row.
    """
    r = result.report
    image = to_host(result.image)
    # the result's options but the position (engine auto: an engine chosen for result's features may not run these)
    options = SegmentOptions.of(
        None, eps=r["eps"], min_samples=r["min_samples"], color=r["color"], alpha=r["alpha"], device=device
    )
    if r["xy_scale"] is None:
        color_only, with_xy = result, segment(image, options.replace(xy_scale=PARAMS["xy_scale"].default))
    else:
        color_only, with_xy = segment(image, options.replace(xy_scale=None)), result
    xy = with_xy.report["xy_scale"] or PARAMS["xy_scale"].default

    def summary(res: SegmentResult) -> str:
        return f"{res.report['n_clusters']} clusters, noise {res.report['noise_fraction']:.0%}"

    params = f"{r['color']}, eps {r['eps']:g}, min_samples {r['min_samples']}"
    tiles = [
        (to_rgb8(image), f"input: {image.shape[1]}x{image.shape[0]} pixels = samples"),
        (overlay(image, color_only.labels), f"colour only ({params})\n{summary(color_only)}"),
        (
            overlay(image, with_xy.labels),
            f"colour + position, xy_scale {xy:g} (radius {int(r['eps'] / xy)} px)\n{summary(with_xy)}",
        ),
        (noise_map(image, with_xy.labels), "noise of colour + position (magenta)\nnot within eps of a core pixel"),
    ]
    return panel(tiles)
