"""Markdown tables of a reproduction run (overlap.json -> overlap.md), ready for REPRODUCING.md."""

from __future__ import annotations

from typing import Any


def overlap_markdown(record: dict[str, Any]) -> str:
    """Test accuracy per step; magnitude-mask overlap (and / chance) per split, step and k.

    The baselines at the first and last step; SEIGH against the exact eigenpairs where computed.
    """
    lines = (
        _accuracy_table(record)
        + _overlap_table(record)
        + _baselines_table(record)
        + _exact_table(record)
    )
    lines += [
        "",
        f"Wall time {record['wall_time_s']:.0f} s, peak RSS {record['peak_rss_gib']:.2f} GiB (this "
        "process).",
    ]
    return "\n".join(lines) + "\n"


def _accuracy_table(record: dict[str, Any]) -> list[str]:
    """Test accuracy per checkpoint step."""
    return [
        "## Test accuracy",
        "",
        "| step | " + " | ".join(str(c["step"]) for c in record["checkpoints"]) + " |",
        "| --- |" + " --- |" * len(record["checkpoints"]),
        "| test accuracy | "
        + " | ".join(f"{c['test_accuracy']:.3f}" for c in record["checkpoints"])
        + " |",
        "",
    ]


def _overlap_table(record: dict[str, Any]) -> list[str]:
    """Magnitude-mask overlap and overlap / chance per split, step and k."""
    ks = record["ks"]
    lines = [
        "## Overlap of the top-k eigenspace with the top-k magnitude mask: overlap (overlap / "
        "chance)",
        "",
        "| split | step | " + " | ".join(f"k={k}" for k in ks) + " |",
        "| --- | --- |" + " --- |" * len(ks),
    ]
    for split, steps in record["splits"].items():
        for step, entry in steps.items():
            cells = [
                f"{entry['overlap'][str(k)]['magnitude']:.4f} "
                f"({entry['overlap'][str(k)]['ratio']:.2f}x)"
                for k in ks
            ]
            lines.append(f"| {split} | {step} | " + " | ".join(cells) + " |")
    return lines


def _baselines_table(record: dict[str, Any]) -> list[str]:
    """Magnitude, random and best masks against chance at the first and last step."""
    ks = record["ks"]
    lines = [
        "",
        "## Baselines / chance: magnitude mask, random masks (mean [5%, 95%] of "
        f"{record['random_masks']}), best mask",
        "",
    ]
    lines += [
        "| split | step | k | chance k/D | magnitude | random | best |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for split, steps in record["splits"].items():
        shown = list(steps)[:: max(1, len(steps) - 1)]  # first and last step
        for step in shown:
            for k in ks:
                row = steps[step]["overlap"][str(k)]
                chance = row["chance"]
                lines.append(
                    f"| {split} | {step} | {k} | {chance:.2e} | {row['magnitude'] / chance:.2f}x | "
                    f"{row['random_mean'] / chance:.2f}x "
                    f"[{row['random_p05'] / chance:.2f}, {row['random_p95'] / chance:.2f}] | "
                    f"{row['best'] / chance:.1f}x |"
                )
    return lines


def _exact_table(record: dict[str, Any]) -> list[str]:
    """SEIGH against the exact eigenpairs, where they were computed (else nothing)."""
    ks, lines = record["ks"], []
    exact = [
        (split, step, entry)
        for split, steps in record["splits"].items()
        for step, entry in steps.items()
        if "exact" in entry
    ]
    if exact:
        top = exact[0][2]["exact"]["top"]
        lines += [
            "",
            "## SEIGH against the exact eigendecomposition (dense Hessian, float64 eigh, same "
            "samples); "
            "overlap / chance from SEIGH's and from the exact eigenvectors",
            "",
            f"| split | step | top-{top} max rel. error | top-{top} median | median over all K | "
            f"top-{top} subspace sin | "
            f"min top-{top} cos | " + " | ".join(f"k={k}: SEIGH / exact" for k in ks) + " |",
            "| --- | --- | --- | --- | --- | --- | --- |" + " --- |" * len(ks),
        ]
        for split, step, entry in exact:
            e = entry["exact"]
            pairs = [
                f"{entry['overlap'][str(k)]['ratio']:.2f} / {e['overlap'][str(k)]['ratio']:.2f}"
                for k in ks
            ]
            lines.append(
                f"| {split} | {step} | {e['top_max_rel_error']:.2%} | "
                f"{e['top_median_rel_error']:.3%} | {e['median_rel_error']:.2%} | "
                f"{e['top_subspace_sine']:.3f} | {min(e['top_vector_cosines']):.3f} | "
                + " | ".join(pairs)
                + " |"
            )
    return lines
