"""The tables the command line prints: one per image's report, and a run's summary."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from gpuseg._core.timing import format_seconds


def _clusters(n: int) -> str:
    return f"{n} cluster{'' if n == 1 else 's'}"


def report_table(report: dict[str, Any]) -> Table:
    """An image's report: the image, parameters, device, engine, clusters, warnings and time per stage."""
    table = Table(title=escape(str(report["source"])), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    h, w = report["image_shape"][:2]
    table.add_row("image", f"{w} x {h}, {report['n_samples']:,} samples, features {', '.join(report['features'])}")
    parameters = f"eps {report['eps']:.4g}, min_samples {report['min_samples']}"
    if report["eps_search"]:
        search = report["eps_search"]
        parameters += f" (eps for {search['target_noise']:.0%} noise, found in {len(search['runs'])} runs)"
    table.add_row("parameters", parameters)
    device = f"{report['device']} ({report['device_name']})"
    if report["fallback_reason"]:
        device += f" - CPU because {report['fallback_reason']}"
    table.add_row("device", escape(device))
    table.add_row("engine", escape(report["engine"] + (f" - {report['engine_note']}" if report["engine_note"] else "")))
    table.add_row("clusters", f"{_clusters(report['n_clusters'])}, noise {report['noise_fraction']:.1%}")
    if report["postprocess"]:
        post, done = report["postprocess"], []
        if post["noise"] == "fill":
            done.append(f"{post['filled']:,} noise pixels filled")
        if post["min_region"] > 1:
            done.append(f"{post['merged_regions']:,} regions under {post['min_region']} px merged")
        table.add_row(
            "after", f"{', '.join(done)}: {_clusters(post['n_clusters'])}, noise {post['noise_fraction']:.1%}"
        )
    for warning in report["warnings"]:
        table.add_row("warning", f"[yellow]{escape(warning)}[/]")
    if report["quality"]:
        q = report["quality"]
        ari, vi = q["adjusted_rand_index"], q["variation_of_information"]
        table.add_row("vs truth", f"adjusted Rand {ari:.3f}, variation of information {vi:.3f}")
    stages = ", ".join(f"{k} {format_seconds(v)}" for k, v in report["timings_s"].items() if v > 0 or k == "total")
    table.add_row("time", stages)
    return table


def summary_table(summary: dict[str, Any]) -> Table:
    """A run's summary: images done, failed and skipped, throughput and time in stages."""
    table = Table(title="summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    counts = f"{summary['done']} done, {summary['failed']} failed, {summary['skipped']} skipped (outputs exist)"
    if summary["not_images"]:
        counts += f", {summary['not_images']} other file(s) passed over"
    table.add_row("images", counts)
    table.add_row(
        "throughput",
        f"{summary['megapixels']:.1f} MP in {format_seconds(summary['wall_s'])}: "
        f"{summary['images_per_s']:.2f} images/s, {summary['megapixels_per_s']:.2f} MP/s",
    )
    stages = ", ".join(f"{k} {format_seconds(v)}" for k, v in summary["stage_s"].items() if v > 0)
    table.add_row("time in stages", stages or "-")
    return table
