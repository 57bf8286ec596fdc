"""Make the README's pictures: gpuseg's default segmentation of the shipped example and of photos bundled
with scikit-image, input beside overlay. Run: python bench/readme_pictures.py [OUT_DIR]"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2

import gpuseg
from gpuseg.segmentation.labels import overlay, to_rgb8
from gpuseg.segmentation.pictures import panel

ROOT = Path(__file__).resolve().parents[1]


def main(out_dir: Path) -> None:
    from skimage import data

    images = {
        "shapes.png (ships with gpuseg)": gpuseg.load_image(ROOT / "gpuseg" / "data" / "shapes.png"),
        "astronaut (scikit-image)": data.astronaut(),
        "coffee (scikit-image)": data.coffee(),
    }
    tiles = []
    for name, image in images.items():
        result = gpuseg.segment(image)
        r = result.report
        tiles += [
            (to_rgb8(image), f"{name}"),
            (overlay(image, result.labels), f"defaults: {r['n_clusters']} clusters, noise {r['noise_fraction']:.0%}"),
        ]
        print(name, f"cluster {r['timings_s']['cluster']:.2f} s")
    out_dir.mkdir(parents=True, exist_ok=True)
    picture = cv2.cvtColor(panel(tiles, width=300), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(out_dir / "defaults.jpg"), picture, [cv2.IMWRITE_JPEG_QUALITY, 85])
    explain(out_dir)
    useful(out_dir)


def useful(out_dir: Path) -> None:
    """The "Segmentations you can use" pictures: DBSCAN's labels, the noise filled and small regions merged,
    and colour alone at the defaults and at the eps `suggest` recommends."""
    from skimage import data

    from gpuseg.tuning.suggest import suggest_eps

    tiles = []
    for name, image in {"coffee": data.coffee(), "astronaut": data.astronaut()}.items():
        exact = gpuseg.segment(image)
        filled = gpuseg.segment(image, noise="fill", min_region=50)
        colour = gpuseg.segment(image, xy_scale=None)
        s = suggest_eps(image, xy_scale=None, target_noise=0.1)
        suggested = gpuseg.segment(image, eps=s.eps, xy_scale=None, noise="fill")
        r, p, c, q = exact.report, filled.report["postprocess"], colour.report, suggested.report
        tiles += [
            (
                overlay(image, exact.labels),
                f"{name}: DBSCAN (defaults)\n{r['n_clusters']} clusters, noise {r['noise_fraction']:.0%} (black)",
            ),
            (overlay(image, filled.labels), f"--noise fill --min-region 50\n{p['n_clusters']} clusters, no noise"),
            (overlay(image, colour.labels), f"colour only (--xy-scale 0)\n{c['n_clusters']} cluster(s): warned"),
            (
                overlay(image, suggested.labels),
                f"colour only, suggested eps {s.eps:.4f}\n+ fill: {q['postprocess']['n_clusters']} clusters",
            ),
        ]
    picture = cv2.cvtColor(panel(tiles, columns=4, width=300), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(out_dir / "useful.jpg"), picture, [cv2.IMWRITE_JPEG_QUALITY, 85])


def explain(out_dir: Path) -> None:
    """The "How pixel clustering works" pictures: the k-distance curve of the shipped example and the
    explain panel of a segmentation with the eps it suggests."""
    from gpuseg.segmentation.pipeline import explain_panel
    from gpuseg.tuning.suggest import plot_k_distances, suggest_eps

    image = gpuseg.load_image(ROOT / "gpuseg" / "data" / "shapes.png")
    suggestion = suggest_eps(image, min_samples=20)
    plot_k_distances(suggestion, out_dir / "kdist.png", overwrite=True)
    result = gpuseg.segment(image, eps=round(suggestion.eps, 4), min_samples=20)
    panel = cv2.cvtColor(explain_panel(result), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(out_dir / "explain.jpg"), panel, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"suggested eps {suggestion.eps:.4f}: {result.report['n_clusters']} clusters")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench" / "results")
