"""Structural diagnosis: what a target's tensors say it is, in plain words, before any knob search."""

from __future__ import annotations

from .binding import _NAMES, Structure


def _why_not(module: str, s: Structure) -> list[str]:
    """Sentences saying why the structure cannot be ``module``; empty when it can."""
    kind, name = s.kind, _NAMES[module]
    if s.problems:
        return list(s.problems)
    if s.channels is None:
        return ["the channel count could not be told from its arguments or parameter shapes; pass channels"]
    if kind is None:
        have = ", ".join(f"{b.name} {b.shape}" for b in s.bindings.values()) or "no tensors the spec knows"
        return [f"its tensors ({have}) do not form SE, CBAM or ECA"]
    if module == "eca" and kind != "eca":
        other = "SE" if kind == "mlp" else "CBAM"
        extra = "" if kind == "mlp" else " and a spatial convolution"
        return [f"this is {other}, not ECA: it has two fully connected layers{extra} and no 1-D convolution"]
    if module in ("se", "cbam") and kind == "eca":
        k = s.shape("conv.weight")[0]
        return [
            f"this is ECA, not {name}: its weight is a 1-D convolution over channels ({k} taps), "
            "and it has no fully connected layers"
        ]
    if module == "se" and kind == "cbam":
        conv = s.bindings["spatial.conv.weight"]
        bn = " and a batch norm" if "spatial.bn.weight" in s.bindings else ""
        return [
            f"this is CBAM, not SE: besides the two fully connected layers it has a spatial convolution ({conv.name} {conv.shape}){bn}"
        ]
    return []


def structural_findings(s: Structure, module: str) -> list[str]:
    """Plain-word findings about a structure that is not the spec's, named before any knob search.

    Each says what the target has and how the spec's module differs; empty when the structure
    fits (then the knob search runs). Recognised: a width-0 MLP, a single fully connected layer
    (an "effective SE"), two unshared MLPs, a normalisation inside the MLP, a grouped or
    per-channel 1-D convolution, a 1-D convolution with several maps.
    """
    f = s.facts
    if not f:
        return []
    out: list[str] = []
    dense = f.get("dense", [])
    c = s.channels
    # a width-0 MLP: C // ratio rounded down to 0 (the spec clamps the width to at least 1)
    zero = [(n, o, i) for n, o, i in dense if o == 0 or i == 0]
    if zero and len(dense) == 2:
        width_c = max(max(o, i) for _, o, i in dense)
        out.append(
            f"its MLP has width 0: {dense[0][0]} maps {width_c} channels to 0 hidden units (the width rounds down "
            f"to 0 at {width_c} channels), so its attention is a constant (the gate of the second layer's bias) "
            "whatever the input; the spec's hidden width is at least 1"
        )
        return out
    if len(dense) == 1 and not f.get("conv1d"):
        n, o, i = dense[0]
        if o == i:
            out.append(
                f"it has a single fully connected layer ({n}, {i} -> {o}) where SE has two with a bottleneck "
                f"between them (channels -> hidden -> channels): an 'effective SE', which the spec does not define"
            )
            return out
    if len(dense) == 4:
        ins = sorted(i for _, _, i in dense)
        outs = sorted(o for _, o, _ in dense)
        if ins == outs and ins[0] == ins[1] and ins[2] == ins[3]:
            names = ", ".join(n for n, _, _ in dense)
            out.append(
                f"it has two MLPs that do not share weights ({names}): one per pooled descriptor, where the spec's "
                "CBAM applies ONE MLP to every pooled descriptor and sums the results"
            )
            return out
    hidden = s.shape("fc1.weight")[0] if "fc1.weight" in s.bindings else None
    for group, size in f.get("bn", []):
        if size > 1 and (size == hidden or size == c or dense):
            where = "its MLP's hidden layer" if size == hidden else "its MLP"
            out.append(
                f"it has a normalisation inside its MLP ({group or 'a batch norm'}, {size} features, in {where}): "
                "the spec's SE and CBAM MLPs have none (CBAM's one batch norm follows its spatial convolution, on 1 map)"
            )
    for name, (o, i, k) in f.get("conv1d", []):
        if o == i == 1:
            continue
        if i == 1 and o > 1:
            out.append(
                f"{name} is a grouped, per-channel 1-D convolution: {o} separate kernels of {k} taps, one per channel "
                f"(like Conv1d({o}, {o}, {k}, groups={o})); ECA slides ONE {k}-tap kernel along the channel axis, "
                "so that neighbouring channels interact"
            )
        else:
            out.append(
                f"{name} is a 1-D convolution from {i} to {o} maps with {k} taps; ECA convolves the pooled channels "
                f"as one 1-channel signal with one {k}-tap kernel"
            )
    return out
