"""Identification: which configuration of which module a target computes (a bounded knob search)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from reference_numpy import (
    CBAMConfig,
    Config,
    ECAConfig,
    describe,
    differences,
    equivalent,
    make_config,
    param_layout,
    preset_configs,
    width_knobs,
)
from reference_numpy.config import ACTIVATIONS, ECA_PADDINGS, GATES, SPATIAL_POOLS

from ..adapters.base import Outputs
from ..cases import Case
from ..compare import Comparison
from ..runner import compare_outputs, reference_outputs
from ..runner import exception_line as _last_line
from .binding import _NAMES, Structure
from .check import ThirdPartyAdapter, _cases
from .diagnosis import _why_not

MAX_CANDIDATES = 60
"""Upper bound on the configurations the identification search evaluates per module."""


# ----------------------------------------------------------------------------- configurations


def _structural_knobs(module: str, s: Structure) -> dict[str, Any]:
    """The knobs the parameter shapes fix for ``module`` (sizes, biases, BN presence)."""
    b, c = s.bindings, s.channels
    assert c is not None
    if module == "eca":
        k = s.shape("conv.weight")[0]
        return {"kernel_size": None if ECAConfig(channels=c).adaptive_kernel_size == k else k, "bias": "conv.bias" in b}
    knobs = width_knobs(c, s.shape("fc1.weight")[0])
    if module == "se":
        return {**knobs, "bias": "fc1.bias" in b}
    knobs["mlp_bias"] = "fc1.bias" in b
    knobs["spatial"] = "spatial.conv.weight" in b
    if knobs["spatial"]:
        knobs["spatial_kernel_size"] = s.shape("spatial.conv.weight")[-1]
        knobs["spatial_bias"] = "spatial.conv.bias" in b
        knobs["spatial_norm"] = "spatial.bn.weight" in b
    return knobs


def _knob_space(cfg: Config) -> list[tuple[str, tuple[Any, ...]]]:
    """The discrete knobs the search varies for ``cfg`` (its structure fixed)."""
    if isinstance(cfg, ECAConfig):
        return [("padding", ECA_PADDINGS), ("gate", GATES)]
    space: list[tuple[str, tuple[Any, ...]]] = [("gate", GATES), ("act", ACTIVATIONS)]
    if isinstance(cfg, CBAMConfig):
        subsets = [p for n in (2, 1, 3, 4) for p in itertools.combinations(SPATIAL_POOLS, n)]
        space.append(("pool_types", tuple(subsets)))
        if cfg.spatial:
            space.append(("spatial_pool_order", (("max", "mean"), ("mean", "max"))))
        if cfg.has_batch_norm:
            space.append(("bn_momentum", (0.01, 0.1, 0.001, 0.003, 0.03, 0.3, 0.5, 0.9, 0.99)))
            space.append(("bn_eps", (1e-5, 1e-3, 1e-4, 1e-6, 1e-2)))
    return space


# ----------------------------------------------------------------------------- identification


@dataclasses.dataclass
class _Trial:
    cfg: Config
    comparisons: list[Comparison]
    score: float  # summed relative L2 error: what the coordinate search descends
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.ok for c in self.comparisons)

    @property
    def worst(self) -> float:
        return max((c.error_ratio for c in self.comparisons), default=math.inf)

    @property
    def worst_comparison(self) -> Comparison | None:
        return max(self.comparisons, key=lambda c: c.error_ratio, default=None)


def _rel(a: np.ndarray | None, r: np.ndarray) -> float:
    if a is None or np.shape(a) != np.shape(r):
        return math.inf
    with np.errstate(over="ignore", invalid="ignore"):
        err = float(np.linalg.norm(np.nan_to_num(np.asarray(a, np.float64) - r, nan=1e300)))
        return err / (float(np.linalg.norm(r)) + 1e-300)


class _Search:
    """Forward-only trials of candidate configs; the target runs once per (layout, case)."""

    def __init__(self, adapter: ThirdPartyAdapter, dtype: str, seed: int, judge: str | None = None):
        self.adapter, self.dtype, self.seed = adapter, dtype, seed
        self.judge = judge or dtype  # the precision its outputs are judged at (float32 for a float64 run
        # whose path computes in float32 somewhere)
        self.trials: list[_Trial] = []
        self._seen: set[str] = set()
        self._runs: dict[Any, list[tuple[Case, Any]]] = adapter.search_runs  # shared by every search

    def _target_runs(self, cfg: Config) -> list[tuple[Case, Any]]:
        """The target's outputs on ``cfg``'s cases; the same for every config with the same layout."""
        key = (self.dtype, tuple((k, s.shape) for k, s in param_layout(cfg).items()), cfg.has_batch_norm)
        if key not in self._runs:
            runs = []
            for case in _cases(cfg, self.seed, self.dtype, self.adapter.data_formats[0]):
                try:
                    got: Any = self.adapter.run(
                        cfg,
                        case.params,
                        case.x,
                        None,
                        training=case.training,
                        data_format=case.data_format,
                        dtype=self.dtype,
                    )
                except Exception as e:
                    got = _last_line(e)
                runs.append((case, got))
            self._runs[key] = runs
        return self._runs[key]

    def trial(self, cfg: Config) -> _Trial | None:
        if cfg.to_json() in self._seen:
            return None
        self._seen.add(cfg.to_json())
        comparisons: list[Comparison] = []
        score = 0.0
        for case, got in self._target_runs(cfg):
            if isinstance(got, str):
                t = _Trial(cfg, [], math.inf, got)
                break
            want = reference_outputs(dataclasses.replace(case, cfg=cfg), with_grads=False)
            comparisons += compare_outputs(got, want, self.judge, self.seed)
            score += _rel(got.y, want.y) + sum(_rel(got.state.get(k), v) for k, v in want.state.items())
        else:
            t = _Trial(cfg, comparisons, score)
        self.trials.append(t)
        return t

    def run(self, start: Sequence[Config]) -> _Trial | None:
        """Try ``start`` (the structural default, then the presets), then descend knob by knob."""
        best: _Trial | None = None
        for cfg in start:
            t = self.trial(cfg)
            if t is not None and t.passed:
                return t
            if t is not None and (best is None or t.score < best.score):
                best = t
        if best is None or best.error is not None:
            return None
        for _ in range(3):
            improved = False
            for knob, values in _knob_space(best.cfg):
                for value in values:
                    if len(self.trials) >= MAX_CANDIDATES:
                        return None
                    t = self.trial(best.cfg.replace(**{knob: value}))
                    if t is None:
                        continue
                    if t.passed:
                        return t
                    if t.score < best.score * (1 - 1e-9):
                        best, improved = t, True
            if not improved:
                return None
        return None

    def closest(self) -> _Trial | None:
        ok = [t for t in self.trials if t.error is None]
        return min(ok, key=lambda t: (t.worst, t.score), default=None)


def _start_configs(module: str, s: Structure) -> list[Config]:
    assert s.channels is not None
    fixed = _structural_knobs(module, s)
    base = make_config(module, s.channels, **fixed)
    out = [base]
    for _, preset in preset_configs(base):
        knobs = {k: v for k, v in dataclasses.asdict(preset).items() if k != "channels" and k not in fixed}
        knobs = {k: v for k, v in knobs.items() if not k.startswith("rd_")}  # the shapes fix the width
        cfg = make_config(module, s.channels, **fixed, **knobs)
        if not any(equivalent(cfg, other) for other in out):
            out.append(cfg)
    return out


def _identify(
    module: str, s: Structure, adapter: ThirdPartyAdapter, dtype: str, seed: int, *, requested_possible: bool
) -> tuple[tuple[Config, bool] | None, list[str], str]:
    """Search the requested module, then whatever the structure says it is; when a float64 search finds
    nothing, once more judging the float64 outputs at float32 precision (a float32 step inside).

    Returns ((config, matched), sentences, judged): the matching configuration, else the closest one
    of the first module searched, else None; ``judged`` is the precision the match was judged at.
    """
    found, sentences = _identify_at(module, s, adapter, dtype, seed, dtype, requested_possible=requested_possible)
    if dtype == "float64" and (found is None or not found[1]):
        again, said = _identify_at(module, s, adapter, dtype, seed, "float32", requested_possible=requested_possible)
        if again is not None and again[1]:
            return again, said, "float32"
    return found, sentences, dtype


def _identify_at(
    module: str,
    s: Structure,
    adapter: ThirdPartyAdapter,
    dtype: str,
    seed: int,
    judge: str,
    *,
    requested_possible: bool,
) -> tuple[tuple[Config, bool] | None, list[str]]:
    order = [module] if requested_possible else []
    if s.kind is not None and not s.problems:
        order += [m for m in {"mlp": ("se", "cbam"), "cbam": ("cbam",), "eca": ("eca",)}[s.kind] if m not in order]
    searches = []
    for m in order:
        if _why_not(m, s):
            continue
        search = _Search(adapter, dtype, seed, judge)
        match = search.run(_start_configs(m, s))
        searches.append((m, search))
        if match is not None:
            return (match.cfg, True), _match_sentences(match.cfg, module)
    if not searches:
        return None, []
    m, first = searches[0]
    name, tried = _NAMES[m], sum(len(sr.trials) for _, sr in searches)
    errors = [t.error for t in first.trials if t.error]
    sentences = [f"with the spec's weights loaded it raised {errors[0]}"] if errors else []
    closest = first.closest()
    if closest is None:
        return None, [*sentences, f"no {name} configuration could be run ({tried} tried)"]
    worst = closest.worst_comparison
    sentences.append(
        f"no {name} configuration matches ({tried} tried); the closest is {describe(closest.cfg)} "
        f"(worst error {closest.worst:.3g}x the tolerance{f', on {worst.name}' if worst else ''})"
    )
    return (closest.cfg, False), sentences


def _match_sentences(cfg: Config, module: str) -> list[str]:
    identified, name = describe(cfg), _NAMES[cfg.module]
    out = [f"matches {identified}"]
    diffs = differences(cfg, make_config(cfg.module, cfg.channels))
    if not diffs:
        out.append(f"it computes exactly the {name} defaults")
    elif not identified.endswith(", ".join(diffs)):  # named after another preset: say how far from the defaults
        out.append(f"it differs from the {name} defaults ({cfg.channels} channels) in {', '.join(diffs)}")
    if cfg.module != module:
        out.append(f"it is {name}, so it does not conform to {_NAMES[module]}")
    elif isinstance(cfg, CBAMConfig) and not cfg.spatial:
        out.append("it has no spatial attention: CBAM's channel half only (the official no_spatial)")
        if cfg.pool_types == ("avg",):
            out.append("CBAM's channel half with average pooling alone computes SE: it verifies as SE too")
    return out


# ----------------------------------------------------------------------------- off-spec computations


class _MinusInput:
    """The target seen through ``y - x``: a block returning ``x + attention(x)`` conforms this way."""

    def __init__(self, adapter: ThirdPartyAdapter):
        self.inner, self.data_formats = adapter, adapter.data_formats
        self.search_runs: dict[Any, list[tuple[Case, Any]]] = {}  # shared by every search

    def run(self, cfg: Config, params: Any, x: np.ndarray, dy: Any, **kw: Any) -> Outputs:
        out = self.inner.run(cfg, params, x, dy, **kw)
        return Outputs(np.asarray(out.y, np.float64) - x, None, {}, out.state)


def _nchw(a: np.ndarray, data_format: str) -> np.ndarray:
    return a if data_format == "channels_first" else a.transpose(0, 3, 1, 2)


def _from_nchw(a: np.ndarray, data_format: str) -> np.ndarray:
    return a if data_format == "channels_first" else a.transpose(0, 2, 3, 1)


def _blend_se(cfg: Config, case: Case) -> np.ndarray:
    """SE squeezing ``0.5 * avg + 0.5 * max`` instead of the average."""
    from reference_numpy import ops

    x = _nchw(case.x, case.data_format)
    p = case.params
    z = 0.5 * x.mean(axis=(2, 3)) + 0.5 * x.max(axis=(2, 3))
    u, _ = ops.mlp_forward(z[None], p["fc1.weight"], p.get("fc1.bias"), p["fc2.weight"], p.get("fc2.bias"), cfg.act)  # type: ignore[union-attr]
    return _from_nchw(x * ops.GATES[cfg.gate][0](u)[:, :, None, None], case.data_format)  # type: ignore[union-attr]


def _ungated_cbam(cfg: Config, case: Case) -> np.ndarray:
    """CBAM multiplying by its spatial map (after conv and BN) without the gate."""
    from reference_numpy import forward

    _, cache, _ = forward(cfg, case.params, case.x, training=False, data_format=case.data_format)
    return _from_nchw(cache.x1 * cache.spatial.zs, case.data_format)  # type: ignore[union-attr]


def _matches_variant(
    adapter: ThirdPartyAdapter,
    cfgs: Sequence[Config],
    variant: Callable[[Config, Case], np.ndarray],
    dtype: str,
    seed: int,
    judge: str,
) -> Config | None:
    """The first of ``cfgs`` whose variant forward the target matches on every eval case."""
    for cfg in cfgs:
        ok = True
        for case in _cases(cfg, seed, dtype, adapter.data_formats[0]):
            if case.training:
                continue
            try:
                got = adapter.run(
                    cfg, case.params, case.x, None, training=False, data_format=case.data_format, dtype=dtype
                )
            except Exception:
                return None
            if not all(c.ok for c in compare_outputs(Outputs(got.y), Outputs(variant(cfg, case)), judge, seed)):
                ok = False
                break
        if ok:
            return cfg
    return None


def off_spec_findings(
    module: str, s: Structure, adapter: ThirdPartyAdapter, dtype: str, seed: int, judge: str
) -> tuple[list[str], str | None]:
    """Computations the spec does not define that a structure fitting the spec can still hide: a residual
    inside (``x + attention(x)``), a blend of pools in SE's squeeze, CBAM's spatial map without its gate.
    Returns (sentences, identified text) when one is recognised, else ([], None)."""
    starts = _start_configs(module, s)
    match = _Search(_MinusInput(adapter), dtype, seed, judge).run(starts)  # type: ignore[arg-type]
    if match is not None:
        name = describe(match.cfg)
        return [
            f"it returns x + {_NAMES[module]}(x): a residual connection inside the block. Without it (y - x) it "
            f"matches {name}; the spec's {_NAMES[module]} returns the attended input alone, and a residual "
            "belongs to the network around it"
        ], f"x + ({name})"
    variants = [m for m in starts for m in (m.replace(gate=g) for g in GATES)] + [
        m.replace(act=a) for m in starts if hasattr(m, "act") for a in ACTIVATIONS
    ]  # ECA has no MLP, so no activation to vary
    if module == "se":
        found = _matches_variant(adapter, variants, _blend_se, dtype, seed, judge)
        if found is not None:
            return [
                "it squeezes with a blend of pools, 0.5 * average + 0.5 * maximum, where the spec's SE squeezes "
                f"with the average alone; otherwise it computes {describe(found)}"
            ], None
    if module == "cbam" and "spatial.conv.weight" in s.bindings:
        found = _matches_variant(adapter, starts, _ungated_cbam, dtype, seed, judge)
        if found is not None:
            return [
                "its spatial attention map has no gate: it multiplies by the convolution (and batch norm) output "
                f"itself, where the spec applies a sigmoid; otherwise it computes {describe(found)}"
            ], None
    return [], None
