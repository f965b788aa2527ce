"""torch_impl under PyTorch's tools, each held to the float64 reference (issue 11, issue 14 item 8).

One test per tool, parametrised over the modules (SE, CBAM with spatial BN, CBAM with every
pool, circular ECA) and modes (eval, train). Every check compares numbers with
``reference_numpy`` through the conformance core (``reference_outputs`` and
``compare_outputs``: SPEC.md section 9's tolerances), never "it runs":

- both paths in eager mode: the fast one (hand-written backward) and the composite one
  (``torch_impl.composite()``), in float32 and float64;
- ``torch.fx.symbolic_trace``, ``torch.jit.trace``, ``torch.export`` and both ONNX exporters
  (run in onnxruntime) with dynamic N, H, W, each run at a size other than the example's;
- double backward (``gradgradcheck``, and Hessian-vector products against central differences
  of the reference's gradient); ``torch.func`` (``grad``, ``vmap`` per-sample gradients,
  ``jacrev``, ``jacfwd``, ``functional_call``); ``torch.compile(fullgraph=True)`` forward and
  backward (``aot_eager`` here: Dynamo and AOTAutograd, the tracing that matters;
  tests/test_torch_compile.py runs Inductor); autocast (CPU bfloat16);
  ``torch.use_deterministic_algorithms(True)``.
"""

from __future__ import annotations

import dataclasses
import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch_impl  # noqa: E402
from conformance import Outputs, compare, make_case, reference_outputs  # noqa: E402
from conformance.runner import compare_outputs  # noqa: E402
from reference_numpy import CBAMConfig, ECAConfig, SEConfig, param_layout  # noqa: E402
from reference_numpy import backward as ref_backward  # noqa: E402
from reference_numpy import forward as ref_forward  # noqa: E402
from tests._fd import fd_error  # noqa: E402
from tests.test_reference_gradients import MAX_FD_ERROR  # noqa: E402

pytestmark = [
    pytest.mark.torch,
    pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning"),  # jit.trace is tested
]

C = 12
SHAPE = (3, C, 4, 5)
"""The example input of every trace and export."""
OTHER_SHAPE = (2, C, 6, 3)
"""The size a traced or exported module then runs at: N, H and W all differ."""
SMALL_SHAPE = (2, C, 3, 2)
"""For full Jacobians and gradgradcheck."""

CONFIGS = {
    "se": SEConfig(channels=C, rd_channels=3, act="silu"),
    "cbam": CBAMConfig(channels=C, rd_channels=3),  # the paper's: avg and max, spatial conv + BN
    "cbam-lse-lp": CBAMConfig(
        channels=C, rd_channels=3, pool_types=("avg", "max", "lse", "lp"), spatial_pool_order=("mean", "max")
    ),
    "eca-ceca": ECAConfig.preset("timm_ceca", channels=C, kernel_size=5),
}
VARIANTS = [
    pytest.param(name, training, id=f"{name}-{'train' if training else 'eval'}")
    for name in CONFIGS
    for training in (False, True)
]
DTYPES = {"float64": torch.float64, "float32": torch.float32}


# ----------------------------------------------------------------------------- helpers


def _case(name: str, training: bool, *, shape=SHAPE, dtype: str = "float64", seed: int = 0):
    return make_case(CONFIGS[name], seed=seed, training=training, shape=shape, dtype=dtype)


def _module(case, dtype: str | None = None) -> torch.nn.Module:
    module = torch_impl.from_config(case.cfg, dtype=DTYPES[dtype or case.dtype])
    return torch_impl.load_canonical(module, case.params).train(case.training)


def _tensor(a: np.ndarray, dtype: str, *, grad: bool = False) -> torch.Tensor:
    return torch.from_numpy(a).to(DTYPES[dtype]).requires_grad_(grad)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _grads(cfg, named: dict[str, torch.Tensor | None]) -> dict[str, np.ndarray]:
    layout = param_layout(cfg)
    return {k: _np(g).reshape(layout[k].shape) for k, g in named.items() if g is not None}


def _state(module: torch.nn.Module, case) -> dict[str, np.ndarray]:
    return {k: _np(b).reshape(case.params[k].shape) for k, b in module.named_buffers() if "running" in k}


def _reset_state(module: torch.nn.Module, case) -> None:
    """Put the case's BN running statistics back (tracing and checking runs updated them)."""
    with torch.no_grad():
        for k, b in module.named_buffers():
            if k in case.params:
                b.copy_(torch.from_numpy(case.params[k]).reshape(b.shape))


def _check(
    got: Outputs,
    case,
    *,
    dtype: str | None = None,
    with_grads: bool = True,
    params: bool = True,
    state: bool = True,
) -> None:
    """``got`` against the reference under SPEC.md section 9's tolerance for ``dtype`` (the case's by default).

    ``with_grads=False``: y only; ``params=False``: no parameter gradients; ``state=False``: no running statistics.
    """
    want = reference_outputs(case, with_grads)
    if not params:
        want = dataclasses.replace(want, grads={})
    if not state:
        want = dataclasses.replace(want, state={})
    bad = [c.message for c in compare_outputs(got, want, dtype or case.dtype, case.seed) if not c.ok]
    assert not bad, "\n".join(bad)


def _run(fn, module: torch.nn.Module, case, dtype: str | None = None) -> Outputs:
    """Forward of ``fn`` on the case's x, backward with its dy; parameters' gradients read from ``module``."""
    dtype = dtype or case.dtype
    module.zero_grad(set_to_none=True)
    x = _tensor(case.x, dtype, grad=True)
    y = fn(x)
    y.backward(_tensor(case.dy, dtype))
    grads = _grads(case.cfg, {k: p.grad for k, p in module.named_parameters()})
    return Outputs(_np(y), _np(x.grad), grads, _state(module, case) if case.training else {})


def _loss_fn(module: torch.nn.Module):
    """``(params, x, dy) -> sum(dy * module(x))`` through ``functional_call``, buffers held fixed."""
    buffers = dict(module.named_buffers())

    def loss(params, x, dy):
        return (torch.func.functional_call(module, {**params, **buffers}, (x,)) * dy).sum()

    return loss


# ----------------------------------------------------------------------------- both paths in eager mode


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("path", ["fast", "composite"])
@pytest.mark.parametrize(("name", "training"), VARIANTS)
def test_both_paths_match_the_reference(name, training, path, dtype):
    case = _case(name, training, dtype=dtype)
    module = _module(case)
    with torch_impl.composite(path == "composite"):
        got = _run(module, module, case)
    _check(got, case)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_composite_path_comparison_can_fail(name):
    """Non-vacuity: one weight off by a relative 1e-7 (conformance's float64 step) must fail the check."""
    case = _case(name, True)
    first = next(iter(case.params))
    wrong = dataclasses.replace(case, params={**case.params, first: case.params[first] * (1 + 1e-7)})
    module = _module(wrong)
    with torch_impl.composite():
        got = _run(module, module, case)
    with pytest.raises(AssertionError, match="MISMATCH"):
        _check(got, case)


def test_the_switch_is_scoped_and_nests():
    from torch_impl._ops import composable

    x = torch.zeros(1)
    assert not composable(x)
    with torch_impl.composite():
        assert composable(x)
        with torch_impl.composite(False):
            assert not composable(x)
        assert composable(x)
    assert not composable(x)


# ----------------------------------------------------------------------------- tracing, export, ONNX


@pytest.mark.parametrize(("name", "training"), VARIANTS)
def test_fx_symbolic_trace(name, training):
    case = _case(name, training, shape=OTHER_SHAPE)
    module = _module(case)
    parent = torch.nn.Sequential(torch.nn.Identity(), module)  # traced inside a model, as feature extractors do
    graph = torch.fx.symbolic_trace(parent)
    assert any(getattr(n.target, "__name__", "") == "_checked_input" for n in graph.graph.nodes)
    _check(_run(graph, module, case), case)
    with pytest.raises(ValueError, match=r"expects 12 input channels on axis 1"):  # checked when the graph runs
        graph(torch.zeros(2, 5, 4, 4))
    with pytest.raises(TypeError, match=r"with float64 parameters expects a float64 input\. Received: dtype=float32"):
        graph(torch.zeros(2, C, 4, 4))


def test_fx_fixes_the_training_flag_at_trace_time():
    case = _case("cbam", training=True, shape=OTHER_SHAPE)
    module = _module(case)
    graph = torch.fx.symbolic_trace(module)  # traced in train mode
    graph.eval()  # does not change the traced graph: it still normalises with batch statistics
    _check(_run(graph, module, case), case)


@pytest.mark.parametrize(("name", "training"), VARIANTS)
def test_jit_trace_runs_at_other_sizes(name, training):
    case = _case(name, training, shape=OTHER_SHAPE)
    module = _module(case)
    example = _tensor(_case(name, training, seed=1).x, "float64")
    with warnings.catch_warnings():
        # a shape of ours baked in as a constant warns (PyTorch's own BN size check warns too, harmlessly)
        warnings.filterwarnings("error", category=torch.jit.TracerWarning, module=r"torch_impl\.")
        traced = torch.jit.trace(module, example, check_inputs=[(_tensor(case.x, "float64"),)])
    _reset_state(module, case)
    _check(_run(traced, module, case), case)


def _dynamic_shapes():
    dim = torch.export.Dim
    return ({0: dim("n"), 2: dim("h"), 3: dim("w")},)


@pytest.mark.parametrize(("name", "training"), VARIANTS)
def test_export_with_dynamic_sizes(name, training):
    case = _case(name, training, shape=OTHER_SHAPE)
    module = _module(case)
    example = _tensor(_case(name, training, seed=1).x, "float64")
    program = torch.export.export(module, (example,), dynamic_shapes=_dynamic_shapes())
    exported = program.module()
    _reset_state(exported, case)
    got = _run(exported, exported, case)
    _check(got, case)


def _onnx_run(module, case, *, dynamo: bool) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    example = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporters' deprecation and tracer notes
        if dynamo:
            pytest.importorskip("onnxscript")
            program = torch.onnx.export(
                module, (example,), dynamo=True, opset_version=18, dynamic_shapes=_dynamic_shapes(), verbose=False
            )
            data = program.model_proto.SerializeToString()
        else:
            buffer = io.BytesIO()
            torch.onnx.export(
                module,
                (example,),
                buffer,
                dynamo=False,
                opset_version=17,
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "h", 3: "w"}},
                training=torch.onnx.TrainingMode.TRAINING if module.training else torch.onnx.TrainingMode.EVAL,
                do_constant_folding=not module.training,
            )
            data = buffer.getvalue()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {session.get_inputs()[0].name: case.x.astype(np.float32)})
    return y


@pytest.mark.parametrize(("name", "training"), VARIANTS)
def test_onnx_torchscript_exporter_with_dynamic_sizes(name, training):
    case = _case(name, training, shape=OTHER_SHAPE, dtype="float32")
    y = _onnx_run(_module(case), case, dynamo=False)
    _check(Outputs(y.astype(np.float64)), case, with_grads=False, state=False)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "training"), VARIANTS)
def test_onnx_dynamo_exporter_with_dynamic_sizes(name, training):
    case = _case(name, training, shape=OTHER_SHAPE, dtype="float32")
    y = _onnx_run(_module(case), case, dynamo=True)
    _check(Outputs(y.astype(np.float64)), case, with_grads=False, state=False)


@pytest.mark.parametrize(("name", "training"), VARIANTS)
def test_compile_fullgraph_forward_and_backward(name, training):
    torch._dynamo.reset()
    case = _case(name, training, shape=OTHER_SHAPE)
    module = _module(case)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    _check(_run(compiled, module, case), case)


# ----------------------------------------------------------------------------- derivatives


@pytest.mark.parametrize(("name", "training"), VARIANTS)
def test_double_backward(name, training):
    """First derivatives with ``create_graph=True`` match the reference; second ones pass gradgradcheck
    and, as Hessian-vector products, match central differences of the reference's gradient."""
    case = _case(name, training, shape=SMALL_SHAPE)
    module = _module(case)
    params = dict(module.named_parameters())
    loss = _loss_fn(module)
    x, dy = _tensor(case.x, "float64", grad=True), _tensor(case.dy, "float64")
    dx, *dps = torch.autograd.grad(loss(params, x, dy), [x, *params.values()], create_graph=True)
    _check(Outputs(_np(module(x)), _np(dx), _grads(case.cfg, dict(zip(params, dps, strict=True)))), case, state=False)

    v = np.random.default_rng(5).standard_normal(case.x.shape)
    (hv,) = torch.autograd.grad(dx, x, torch.from_numpy(v))
    eps = 1e-6

    def ref_dx(xs: np.ndarray) -> np.ndarray:
        _, cache, _ = ref_forward(case.cfg, case.params, xs, training=training)
        return ref_backward(case.cfg, case.dy, cache)[0]

    numeric = (ref_dx(case.x + eps * v) - ref_dx(case.x - eps * v)) / (2 * eps)
    error = fd_error({"hv": _np(hv)}, {"hv": numeric})["hv"]
    assert error <= MAX_FD_ERROR, f"Hessian-vector product: FD error {error:.3g}"

    names = list(params)

    def f(x, *ps):
        return torch.func.functional_call(
            module, {**dict(zip(names, ps, strict=True)), **dict(module.named_buffers())}, (x,)
        )

    inputs = (x.detach().requires_grad_(), *(p.detach().requires_grad_() for p in params.values()))
    assert torch.autograd.gradgradcheck(f, inputs, fast_mode=True)


@pytest.mark.parametrize(("name", "training"), VARIANTS)
def test_vectorised_backward(name, training):
    """``is_grads_batched`` (as ``torch.autograd.functional.jacobian(vectorize=True)`` uses): cotangents dy and -dy."""
    case = _case(name, training)
    module = _module(case)
    params = dict(module.named_parameters())
    x = _tensor(case.x, "float64", grad=True)
    y = module(x)
    dy = _tensor(case.dy, "float64")
    dx, *dps = torch.autograd.grad(y, [x, *params.values()], torch.stack([dy, -dy]), is_grads_batched=True)
    for i, sign in enumerate((1.0, -1.0)):  # the gradient is linear in dy, and negation is exact
        grads = _grads(case.cfg, {k: sign * g[i] for k, g in zip(params, dps, strict=True)})
        _check(Outputs(_np(y), sign * _np(dx[i]), grads, _state(module, case) if training else {}), case)


@pytest.mark.parametrize(("name", "training"), VARIANTS)
def test_func_grad_and_functional_call(name, training):
    case = _case(name, training)
    module = torch_impl.from_config(case.cfg, dtype=torch.float64).train(training)  # its own weights ...
    params = {k: torch.from_numpy(case.params[k]).reshape(p.shape) for k, p in module.named_parameters()}
    _reset_state(module, case)
    before = {k: b.clone() for k, b in module.named_buffers()}
    x, dy = _tensor(case.x, "float64"), _tensor(case.dy, "float64")
    dparams, dx = torch.func.grad(_loss_fn(module), argnums=(0, 1))(params, x, dy)  # ... the case's passed in
    # under torch.func, train-mode BN normalises with batch statistics and leaves the running ones alone
    after = dict(module.named_buffers())
    assert all(torch.equal(after[k], before[k]) for k in before if "running" in k)
    y = torch.func.functional_call(module, params, (x,))  # eager: the fast path, running statistics updated
    _check(Outputs(_np(y), _np(dx), _grads(case.cfg, dparams), _state(module, case) if training else {}), case)


@pytest.mark.parametrize(("name", "training"), VARIANTS)
def test_func_vmap_per_sample_gradients(name, training):
    case = _case(name, training)
    module = _module(case)
    params = {k: p.detach() for k, p in module.named_parameters()}
    loss = _loss_fn(module)

    def one(params, x, dy):
        return torch.func.grad(loss, argnums=(0, 1))(params, x[None], dy[None])

    dparams, dx = torch.func.vmap(one, in_dims=(None, 0, 0))(
        params, _tensor(case.x, "float64"), _tensor(case.dy, "float64")
    )
    for i in range(case.x.shape[0]):
        sample = dataclasses.replace(case, x=case.x[i : i + 1], dy=case.dy[i : i + 1])
        with torch.no_grad():
            y = module(_tensor(sample.x, "float64"))
        got = Outputs(_np(y), _np(dx[i]), _grads(case.cfg, {k: g[i] for k, g in dparams.items()}))
        _check(got, sample, state=False)


@pytest.mark.parametrize("transform", ["jacrev", "jacfwd"])
@pytest.mark.parametrize(("name", "training"), VARIANTS)
def test_func_jacobians(name, training, transform):
    case = _case(name, training, shape=SMALL_SHAPE)
    module = _module(case)
    x = _tensor(case.x, "float64")
    jac = getattr(torch.func, transform)(module)(x)  # y.shape + x.shape
    dx = torch.tensordot(_tensor(case.dy, "float64"), jac, dims=4)  # dy^T J
    with torch.no_grad():
        y = module(x)
    _check(Outputs(_np(y), _np(dx)), case, params=False, state=False)


@pytest.mark.parametrize(("name", "training"), VARIANTS)
def test_forward_ad_dual_tensors(name, training):
    """``torch.autograd.forward_ad``: the JVP along v, contracted with dy, is the reference's ``<dx, v>``."""
    import torch.autograd.forward_ad as fwad

    case = _case(name, training)
    module = _module(case)
    v = np.random.default_rng(7).standard_normal(case.x.shape)
    with fwad.dual_level():
        out = module(fwad.make_dual(_tensor(case.x, "float64"), torch.from_numpy(v)))
        y, jv = fwad.unpack_dual(out)
    want = reference_outputs(case)
    _check(Outputs(_np(y), state=_state(module, case) if training else {}), case, with_grads=False)
    got = compare("<dy, J v>", float((case.dy * _np(jv)).sum()), float((want.dx * v).sum()), "float64", seed=case.seed)
    assert got.ok, got.message


# ----------------------------------------------------------------------------- autocast, determinism


@pytest.mark.parametrize("path", ["fast", "composite"])
@pytest.mark.parametrize(("name", "training"), VARIANTS)
def test_autocast_bfloat16(name, training, path):
    """Output and running statistics under bfloat16's tolerance; gradients run (finite), but like every
    half-type gradient in this project (the adapters' ``grad_dtypes``) they are held to no tolerance."""
    case = _case(name, training, dtype="bfloat16")
    module = _module(case, "float32")
    with torch_impl.composite(path == "composite"), torch.autocast("cpu", dtype=torch.bfloat16):
        got = _run(module, module, case, "float32")
    assert np.isfinite(got.dx).all() and all(np.isfinite(g).all() for g in got.grads.values())
    _check(dataclasses.replace(got, dx=None, grads={}), case, dtype="bfloat16", with_grads=False)


@pytest.mark.parametrize("path", ["fast", "composite"])
@pytest.mark.parametrize(("name", "training"), VARIANTS)
def test_deterministic_algorithms(name, training, path):
    case = _case(name, training, dtype="float32")
    was, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with torch_impl.composite(path == "composite"):
            runs = []
            for _ in range(2):
                module = _module(case)
                runs.append(_run(module, module, case))
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)
    first, second = runs
    assert np.array_equal(first.y, second.y) and np.array_equal(first.dx, second.dx)
    assert all(np.array_equal(first.grads[k], second.grads[k]) for k in first.grads)
    _check(first, case)


# ----------------------------------------------------------------------------- input type and dtype (issue 14, item 8)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_input_type_and_dtype_are_checked_with_the_spec_message(name):
    cfg = CONFIGS[name]
    module = torch_impl.from_config(cfg)
    x = np.zeros((2, C, 4, 4), np.float32)
    with pytest.raises(TypeError, match=r"expects a torch\.Tensor\. Received: numpy\.ndarray"):
        module(x)
    for dtype in (torch.float64, torch.float8_e4m3fn, torch.bfloat16):
        with pytest.raises(TypeError) as ours:
            module(torch.zeros(2, C, 4, 4).to(dtype))
        with pytest.raises(TypeError) as spec:
            cfg.validate_input_dtype(str(dtype).removeprefix("torch."), expected="float32")
        assert str(ours.value) == str(spec.value)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast mixes dtypes by design
        assert module(torch.zeros(2, C, 4, 4, dtype=torch.bfloat16)).shape == (2, C, 4, 4)
