"""A cell's localisation in words (one terminal line, plus notes) and as an HTML heat map: rows layer x
direction, columns time steps, one panel for the error each step makes on its own (local), one for the error
it carries in."""

from __future__ import annotations

import math
from html import escape

from harness.judging.localisation import LayerErrors, Localisation
from harness.judging.results import CellResult

_SHORT = {"forward": "fwd", "reverse": "rev"}


def localisation_lines(cell: CellResult) -> list[str]:
    """The one-line finding (indented as a cell's detail), then any note of its own (kernel blocking)."""
    found = cell.localisation
    if found is None:
        return []
    return [f"    {found.finding}", *(f"    {note}" for note in found.notes)]


def heat_map_html(localisation: Localisation | None) -> str:
    """Two inline SVG panels (local, carried), or nothing when the cell was not localised."""
    if localisation is None or not localisation.per_layer:
        return ""
    panels = "".join(_panel(title, localisation.per_layer, attribute, localisation.noise)
                     for title, attribute in (("local error (made at the step)", "local"),
                                              ("carried error (brought in by state and input)", "carried")))
    return (f'<div class="localisation"><p>{escape(localisation.finding)}</p>{panels}'
            f"<p>|error| per step, max over batch and hidden units; white at or below the noise "
            f"({localisation.noise:.1g}), then log10 up to 1 (dark red); hover a square for its value</p></div>")


def _panel(title: str, layers: tuple[LayerErrors, ...], attribute: str, noise: float) -> str:
    steps = max(len(layer.local) for layer in layers)
    size, label_width, top = 14, 60, 18
    width, height = max(label_width + steps * size + 4, 300), top + len(layers) * size + 16
    parts = [f'<text x="0" y="12" font-size="11">{escape(title)}</text>']
    for row, layer in enumerate(layers):
        y = top + row * size
        parts.append(f'<text x="0" y="{y + size - 3}" font-size="10">L{layer.layer} {_SHORT[layer.direction]}</text>')
        for step, value in enumerate(getattr(layer, attribute)):
            tip = f"layer {layer.layer} {layer.direction} step {step}: {attribute} {value:.3g}"
            parts.append(f'<rect x="{label_width + step * size}" y="{y}" width="{size - 1}" height="{size - 1}" '
                         f'fill="{_colour(value, noise)}" stroke="#dddddd" data-step="{step}">'
                         f"<title>{tip}</title></rect>")
    for step in range(0, steps, 5):
        parts.append(f'<text x="{label_width + step * size}" y="{height - 3}" font-size="9">{step}</text>')
    return (f'<svg class="heat-{attribute}" width="{width}" height="{height}" role="img" style="display:block" '
            f'aria-label="{escape(title)}">{"".join(parts)}</svg>')


def _colour(value: float, noise: float) -> str:
    """White at or below the noise, dark red at 1 and above, linear in log10 between (black: not finite)."""
    if not math.isfinite(value):
        return "#000000"
    low = math.log10(noise) if noise > 0 else -9.0
    share = 0.0 if value <= noise else min(1.0, max(0.0, (math.log10(value) - low) / -low)) if low < 0 else 1.0
    red, green, blue = 255 - round(90 * share), 255 - round(255 * share), 255 - round(255 * share)
    return f"#{red:02x}{green:02x}{blue:02x}"


def explain_lines(cells: tuple[CellResult, ...]) -> list[str]:
    """`harness explain`: each cell's finding and one line per layer and direction, whatever its verdict."""
    lines: list[str] = []
    for cell in cells:
        found = cell.localisation
        if found is None:
            continue
        lines += ["", f"Localisation: {cell.config_id} x {cell.backend} ({cell.verdict.value})",
                  *localisation_lines(cell)]
        for layer in found.per_layer:
            step = max(range(len(layer.local)), key=lambda index: layer.local[index], default=0)
            growth = f"x{layer.growth:.3g} per step" if layer.growth is not None else "-"
            lines.append(f"      layer {layer.layer} {layer.direction:7}  local max {max(layer.local, default=0):.2g} "
                         f"(step {step})  carried max {max(layer.carried, default=0):.2g}  growth {growth}")
    return lines
