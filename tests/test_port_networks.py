"""Whole-network porting (issue #12): PyTorch state dicts into Keras, Linen and NNX models, and back.

ResNets (``examples/``: timm's names and layouts) at reduced size: depth 18 with every attention
kind and one depth-50 case, trained a few steps in PyTorch, ported with the new porters, compared
on float32 eval logits under issue #12's bar (``examples.port_weights.MAX_RELATIVE_DIFFERENCE``),
and exported back bit for bit. A small network of our own covers grouped and depthwise
convolutions, LayerNorm and this project's PyTorch dialect. Refused ports change nothing.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("keras")
pytest.importorskip("flax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
from flax import linen as nn  # noqa: E402
from flax import nnx  # noqa: E402
from torch import nn as tnn  # noqa: E402

import tf_impl  # noqa: E402
import torch_impl  # noqa: E402
from conformance import compare  # noqa: E402
from examples import port_weights  # noqa: E402
from examples.resnet_keras import resnet as keras_resnet  # noqa: E402
from examples.resnet_torch import CbamModule  # noqa: E402
from flax_impl import linen  # noqa: E402
from flax_impl import nnx as attn_nnx  # noqa: E402
from reference_numpy import THIRD_PARTY, CBAMConfig, ECAConfig, SEConfig, export_state_dict, init_params  # noqa: E402
from reference_numpy.porting import ATTNSPEC, PortError, dialects  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.keras, pytest.mark.flax]

SMALL = dict(num_classes=5, steps=1, batch=4, image_size=32)
BAR = port_weights.MAX_RELATIVE_DIFFERENCE


@functools.cache
def _resnet(depth: int, attn: str | None) -> port_weights.Result:
    return port_weights.port(depth, attn, **SMALL)


@functools.cache
def _keras_cbam() -> Any:
    """One built Keras ResNet-18 with CBAM, shared by the tests that load into it (each checks only its own load)."""
    model = keras_resnet(18, "cbam", SMALL["num_classes"])
    model(np.zeros((1, SMALL["image_size"], SMALL["image_size"], 3), np.float32))
    return model


RESNETS = [pytest.param(18, a, id=f"resnet18-{a}") for a in (None, "se", "eca", "ceca", "cbam")]
RESNETS.append(pytest.param(50, "se", id="resnet50-se"))


@pytest.mark.parametrize(("depth", "attn"), RESNETS)
@pytest.mark.parametrize("framework", ["keras", "flax"])
def test_a_trained_resnet_ports_within_the_bar_and_back_bit_for_bit(
    depth: int, attn: str | None, framework: str
) -> None:
    result = _resnet(depth, attn)
    assert result.relative(framework) <= BAR, (framework, result.relative(framework))
    assert result.ported[framework].round_trip


@functools.cache
def _trained_cbam() -> tuple[Any, np.ndarray, np.ndarray]:
    """A trained PyTorch ResNet-18 with CBAM, an NCHW input, and its float32 logits."""
    model = port_weights.train_torch(18, "cbam", **SMALL)
    x = np.random.default_rng(3).normal(size=(2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        return model, x, model(torch.from_numpy(x)).numpy()


def test_a_kernel_ported_the_wrong_way_round_breaks_the_bar() -> None:
    """Non-vacuity: CBAM's spatial kernel with its two descriptor channels swapped (the pool-order mistake)."""
    model, x, reference = _trained_cbam()
    sd = dict(model.state_dict())
    key = "layer1.0.se.spatial.conv.conv.weight"
    sd[key] = sd[key].flip(1)
    keras_model = _keras_cbam()
    tf_impl.load_torch_state_dict(keras_model, sd)
    logits = np.asarray(keras_model(x.transpose(0, 2, 3, 1), training=False))
    assert port_weights.relative_difference(logits, reference) > BAR


def _keras_weights(model: Any) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in model.weights]


def test_keras_refused_port_changes_nothing_and_names_every_problem() -> None:
    model = _trained_cbam()[0]
    sd = dict(model.state_dict())
    keras_model = _keras_cbam()
    before = _keras_weights(keras_model)
    bad = dict(sd)
    del bad["layer2.1.bn2.running_var"]
    bad["layer9.conv.weight"] = np.zeros(3)
    bad["fc.weight"] = np.zeros((5, 511))
    bad["layer3.0.se.channel.fc1.weight"] = np.zeros((16, 256))  # timm's is (16, 256, 1, 1): no dialect has this
    bad["layer1.0.conv1.weight"] = np.full((64, 64, 3, 3), None)
    with pytest.raises(PortError) as info:
        tf_impl.load_torch_state_dict(keras_model, bad)
    message = str(info.value)
    for needle in (
        "missing keys: layer2.1.bn2.running_var",
        "unexpected keys: layer9.conv.weight",
        "fc.weight (expected shape (5, 512), received (5, 511))",
        "layer3.0.se.channel.fc1.weight (expected shape (16, 256, 1, 1), received (16, 256))",
        "layer1.0.conv1.weight (an array of Python objects",
    ):
        assert needle in message, message
    assert "nothing was loaded" in message
    assert all(np.array_equal(a, b) for a, b in zip(before, _keras_weights(keras_model), strict=True))


def test_keras_strict_false_loads_what_fits_and_reports_the_rest() -> None:
    model = _trained_cbam()[0]
    sd = {k: v.numpy() for k, v in model.state_dict().items()}  # NumPy arrays, not tensors
    keras_model = _keras_cbam()
    old_fc = np.array(keras_model.fc.kernel.numpy())
    sd["fc.weight"] = np.zeros((5, 7))
    sd["extra.weight"] = np.zeros(2)
    del sd["bn1.bias"]
    report = tf_impl.load_torch_state_dict(keras_model, sd, strict=False)
    assert (report.missing, report.unexpected) == (["bn1.bias"], ["extra.weight"])
    assert report.misshaped == ["fc.weight (expected shape (5, 512), received (5, 7))"]
    assert not report.ok and "fc.weight" not in report.loaded and "bn1.weight" in report.loaded
    assert report.dialects["layer1.0.se"] == ("timm",)
    assert all(k.endswith("num_batches_tracked") for k in report.ignored) and report.ignored
    assert np.array_equal(keras_model.fc.kernel.numpy(), old_fc)  # the mis-shaped tensor was not loaded
    np.testing.assert_array_equal(keras_model.bn1.gamma.numpy(), sd["bn1.weight"])
    np.testing.assert_array_equal(
        keras_model.get_layer("layer1").get_layer("0").conv1.kernel.numpy(),
        sd["layer1.0.conv1.weight"].transpose(2, 3, 1, 0),
    )


def test_linen_refuses_with_one_error_and_tensors_equal_arrays() -> None:
    from examples.resnet_flax import resnet as flax_resnet

    model, x, _ = _trained_cbam()
    sd = model.state_dict()
    variables = jax.eval_shape(flax_resnet(18, "cbam", 5).init, jax.random.key(0), x[:1].transpose(0, 2, 3, 1))
    variables = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), variables)
    from_tensors = linen.load_torch_state_dict(variables, sd)
    from_arrays = linen.load_torch_state_dict(variables, {k: v.numpy() for k, v in sd.items()})
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, from_tensors, from_arrays))
    bad = {k: v for k, v in sd.items() if k != "layer4.1.se.spatial.conv.bn.running_mean"}
    bad["layer4.1.se.spatial.conv.bn.running_mean2"] = torch.zeros(1)
    with pytest.raises(PortError, match=r"missing keys: layer4\.1\.se\.spatial\.conv\.bn\.running_mean; unexpected"):
        linen.load_torch_state_dict(variables, bad)
    partial, report = linen.load_torch_state_dict(variables, bad, strict=False)
    assert report.missing == ["layer4.1.se.spatial.conv.bn.running_mean"]
    assert float(partial["batch_stats"]["layer4"]["1"]["se"]["spatial"]["bn"]["mean"][0]) == 0.0
    assert np.array_equal(partial["params"]["fc"]["kernel"], sd["fc.weight"].numpy().T)


# ----------------------------------------------------------------------------- a small network of our own


class TorchNet(tnn.Module):
    """Grouped and depthwise convolutions, batch and layer norm, and this project's CBAM (its own dialect)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = tnn.Conv2d(3, 8, 3, padding=1)
        self.grouped = tnn.Conv2d(8, 12, 3, padding=1, groups=4, bias=False)
        self.depthwise = tnn.Conv2d(12, 24, 3, padding=1, groups=12)
        self.bn = tnn.BatchNorm2d(24)
        self.attn = torch_impl.CBAM(24, rd_channels=6)  # spatial_pool_order ("max", "mean")
        self.norm = tnn.LayerNorm(24)
        self.head = tnn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.grouped(torch.relu(self.stem(x)))
        x = self.attn(torch.relu(self.bn(self.depthwise(x))))
        return self.head(self.norm(x.mean((2, 3))))


def _keras_net() -> Any:
    layers = keras.layers
    return keras.Sequential(
        [
            layers.Conv2D(8, 3, padding="same", name="stem"),
            layers.ReLU(),
            layers.Conv2D(12, 3, padding="same", groups=4, use_bias=False, name="grouped"),
            layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="depthwise"),
            layers.BatchNormalization(epsilon=1e-5, name="bn"),
            layers.ReLU(),
            tf_impl.CBAM(24, rd_channels=6, name="attn", data_format="channels_last"),
            layers.GlobalAveragePooling2D(),
            layers.LayerNormalization(epsilon=1e-5, name="norm"),
            layers.Dense(5, name="head"),
        ]
    )


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(8, (3, 3), padding=1, name="stem")(x))
        x = nn.Conv(12, (3, 3), padding=1, feature_group_count=4, use_bias=False, name="grouped")(x)
        x = nn.Conv(24, (3, 3), padding=1, feature_group_count=12, name="depthwise")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-5, name="bn")(x))
        x = linen.CBAM.create(24, rd_channels=6, name="attn")(x)
        x = nn.LayerNorm(epsilon=1e-5, name="norm")(jnp.mean(x, axis=(1, 2)))
        return nn.Dense(5, name="head")(x)


class NNXNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.stem = nnx.Conv(3, 8, (3, 3), padding=1, rngs=rngs)
        self.grouped = nnx.Conv(8, 12, (3, 3), padding=1, feature_group_count=4, use_bias=False, rngs=rngs)
        self.depthwise = nnx.Conv(12, 24, (3, 3), padding=1, feature_group_count=12, rngs=rngs)
        self.bn = nnx.BatchNorm(24, use_running_average=True, epsilon=1e-5, rngs=rngs)
        self.attn = attn_nnx.CBAM(24, rd_channels=6, rngs=rngs)
        self.norm = nnx.LayerNorm(24, epsilon=1e-5, rngs=rngs)
        self.head = nnx.Linear(24, 5, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.grouped(nnx.relu(self.stem(x)))
        x = self.attn(nnx.relu(self.bn(self.depthwise(x))))
        return self.head(self.norm(jnp.mean(x, axis=(1, 2))))


@functools.cache
def _small() -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """A trained TorchNet's state dict, an NCHW float32 input and the float64 logits."""
    torch.manual_seed(0)
    net = TorchNet()
    optimiser = torch.optim.SGD(net.parameters(), lr=0.05)
    rng = np.random.default_rng(0)
    for _ in range(3):
        loss = net(torch.tensor(rng.normal(size=(8, 3, 10, 9)), dtype=torch.float32)).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    net.eval()
    x = rng.normal(size=(3, 3, 10, 9)).astype(np.float32)
    with torch.no_grad():
        reference = net.double()(torch.from_numpy(x).double()).numpy()
    return net.float().state_dict(), x, reference


def _run_keras(sd: Any, x: np.ndarray) -> tuple[Any, np.ndarray]:
    model = _keras_net()
    model(x[:1])
    tf_impl.load_torch_state_dict(model, sd)
    return model, np.asarray(model(x, training=False))


def _run_linen(sd: Any, x: np.ndarray) -> tuple[Any, np.ndarray]:
    variables = LinenNet().init(jax.random.key(0), x[:1])
    variables = linen.load_torch_state_dict(variables, sd)
    return variables, np.asarray(LinenNet().apply(variables, x))


def _run_nnx(sd: Any, x: np.ndarray) -> tuple[Any, np.ndarray]:
    net = NNXNet(nnx.Rngs(0))
    attn_nnx.load_torch_state_dict(net, sd)
    net.eval()  # this project's NNX CBAM starts in training mode, as nnx.BatchNorm does
    return net, np.asarray(net(x))


SMALL_NETS = {
    "keras": (_run_keras, tf_impl.to_torch_state_dict),
    "linen": (_run_linen, linen.to_torch_state_dict),
    "nnx": (_run_nnx, attn_nnx.to_torch_state_dict),
}


@pytest.mark.parametrize("framework", list(SMALL_NETS))
def test_grouped_depthwise_layer_norm_and_this_projects_dialect(framework: str) -> None:
    sd, x, reference = _small()
    run, export = SMALL_NETS[framework]
    model, logits = run(sd, x.transpose(0, 2, 3, 1))
    comparison = compare(f"logits[{framework}]", logits, reference, "float32")
    assert comparison.ok, comparison.message
    back = export(model, dialect=ATTNSPEC)
    held = {k: v.numpy() for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert set(back) == set(held)
    assert all(np.array_equal(back[k], held[k]) for k in held)
    # non-vacuity: the depthwise kernel read as an ordinary grouped one (multiplier and channel swapped)
    wrong = dict(sd)
    w = sd["depthwise.weight"]
    wrong["depthwise.weight"] = w.reshape(12, 2, 3, 3).transpose(0, 1).reshape(24, 1, 3, 3)
    assert not compare("logits", run(wrong, x.transpose(0, 2, 3, 1))[1], reference, "float32").ok


def test_nnx_refused_port_changes_nothing() -> None:
    sd = _small()[0]
    net = NNXNet(nnx.Rngs(0))
    attn_nnx.load_torch_state_dict(net, sd)
    before = jax.tree_util.tree_map(np.array, nnx.to_pure_dict(nnx.state(net)))
    bad = {k: v * 2 for k, v in sd.items() if k != "attn.spatial.conv.weight"}
    bad["head.weight"] = torch.full((5, 24), 1e39, dtype=torch.float64)  # overflows float32
    with pytest.raises(PortError) as info:
        attn_nnx.load_torch_state_dict(net, bad)
    assert "missing keys: attn.spatial.conv.weight" in str(info.value)
    assert "head.weight (float32; largest magnitude 1e+39)" in str(info.value)
    with pytest.raises(TypeError, match=r"`strict` must be a bool\. Received: strict='no'"):
        attn_nnx.load_torch_state_dict(net, bad, strict="no")  # truthy: never taken for strict=True
    after = nnx.to_pure_dict(nnx.state(net))
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, before, after))


def test_a_layer_the_porter_does_not_know_is_refused() -> None:
    model = keras.Sequential([keras.layers.Conv1D(4, 3, name="conv")])
    model.build((None, 8, 2))
    with pytest.raises(PortError, match=r"conv/kernel \(a weight of a layer the porter does not know\)"):
        tf_impl.load_torch_state_dict(model, {})


# ----------------------------------------------------------------------------- attention dialects


CONFIGS = {
    "se": SEConfig(channels=24, rd_channels=6),
    "cbam": CBAMConfig(channels=24, rd_channels=6),
    "eca": ECAConfig(channels=24, kernel_size=5),
}


def _fits(module: str, dialect: str) -> Any:
    cfg = CONFIGS[module]
    if (module, dialect) == ("se", "senet_pytorch"):
        cfg = cfg.replace(bias=False)
    if (module, dialect) == ("cbam", "timm"):  # timm's layout: no MLP biases, descriptors stacked (mean, max)
        cfg = cfg.replace(mlp_bias=False, spatial_pool_order=("mean", "max"))
    return cfg


DIALECTS = [pytest.param(m, d, id=f"{m}-{d}") for m in CONFIGS for d in dialects(m)]


class Holder(nnx.Module):
    def __init__(self, cfg: Any) -> None:
        self.block = nnx.List([attn_nnx.from_config(cfg, rngs=nnx.Rngs(0))])


@pytest.mark.parametrize(("module", "dialect"), DIALECTS)
def test_every_dialect_is_detected_and_written_back(module: str, dialect: str) -> None:
    cfg = _fits(module, dialect)
    params = {k: v.astype(np.float32) for k, v in init_params(cfg, seed=4).items()}
    if dialect == ATTNSPEC:
        held = torch_impl.from_config(cfg)
        torch_impl.load_canonical(held, params)
        sd = {f"block.0.{k}": v for k, v in held.state_dict().items()}
    else:
        sd = export_state_dict(params, dialect, cfg, prefix="block.0.")
    net = Holder(cfg)
    report = attn_nnx.load_torch_state_dict(net, sd)
    assert dialect in report.dialects["block.0"]
    got = attn_nnx.to_canonical(net.block[0])
    assert all(np.array_equal(got[k], params[k]) for k in params)
    back = attn_nnx.to_torch_state_dict(net, dialect=dialect)
    held = {k: np.asarray(v) for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert set(back) == set(held) and all(np.array_equal(back[k], held[k]) for k in held)


def test_every_third_party_layout_is_covered() -> None:
    assert {(m, d) for m in CONFIGS for d in dialects(m)} >= set(THIRD_PARTY)


def _timm_cbam(cfg: CBAMConfig, seed: int) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """The timm stand-in's state dict under ``se.``, an NCHW float32 input and its float64 output."""
    torch.manual_seed(seed)
    timm_like = CbamModule(cfg).eval()
    x = np.random.default_rng(seed).normal(size=(2, 16, 6, 5)).astype(np.float32)
    with torch.no_grad():
        timm_like.spatial.conv.bn.running_mean.fill_(0.3)
        sd = {f"se.{k}": v.clone() for k, v in timm_like.state_dict().items()}
        expected = timm_like.double()(torch.from_numpy(x).double()).numpy()
    return sd, x, expected


def test_timm_cbam_into_a_max_mean_config_is_reordered_exactly() -> None:
    """timm stacks (mean, max); a target whose config stacks (max, mean) gets the kernel's channels swapped."""
    sd, x, expected = _timm_cbam(CBAMConfig.preset("timm", channels=16, rd_channels=4), 1)
    layer = tf_impl.CBAM(16, preset="timm", rd_channels=4, spatial_pool_order=("max", "mean"), name="se")
    model = keras.Sequential([layer])
    model.build((None, 6, 5, 16))
    assert tf_impl.load_torch_state_dict(model, sd).dialects["se"] == ("timm",)
    got = np.asarray(model(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    comparison = compare("y", got, expected, "float32")
    assert comparison.ok, comparison.message
    w = sd["se.spatial.conv.conv.weight"].numpy()
    assert np.array_equal(tf_impl.to_canonical(layer)["spatial.conv.weight"], w[:, ::-1])
    assert np.array_equal(tf_impl.to_torch_state_dict(model)["se.spatial.conv.conv.weight"], w)
    # non-vacuity: the kernel copied as it is (what a porter blind to the pool order would do)
    tf_impl.load_canonical(layer, {"spatial.conv.weight": w}, strict=False)
    assert not compare("y", np.asarray(model(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2), expected, "float32").ok


def test_linen_checks_blocks_against_the_configs_it_is_given() -> None:
    """Linen variables carry no config: ``attention_configs`` traces them, and the timm kernel is then reordered."""
    cfg = CBAMConfig.preset("timm", channels=16, rd_channels=4)
    sd, x, expected = _timm_cbam(cfg, 2)
    target = cfg.replace(spatial_pool_order=("max", "mean"))

    class Holder(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            return linen.CBAM(config=target, name="se")(x)

    xl = x.transpose(0, 2, 3, 1)
    configs = linen.attention_configs(Holder(), xl)
    assert configs == {"se": target}
    variables = Holder().init(jax.random.key(0), xl)
    ported = linen.load_torch_state_dict(variables, sd, configs=configs)
    got = np.asarray(Holder().apply(ported, xl)).transpose(0, 3, 1, 2)
    comparison = compare("y", got, expected, "float32")
    assert comparison.ok, comparison.message
    assert np.array_equal(
        linen.to_torch_state_dict(ported, configs=configs)["se.spatial.conv.conv.weight"],
        sd["se.spatial.conv.conv.weight"].numpy(),
    )
    # without configs the kernel is taken in timm's order, which this block does not compute: non-vacuity
    blind = np.asarray(Holder().apply(linen.load_torch_state_dict(variables, sd), xl)).transpose(0, 3, 1, 2)
    assert not compare("y", blind, expected, "float32").ok
    with pytest.raises(PortError, match=r"se \(its variables are not the Flax layout of the config given"):
        linen.load_torch_state_dict(variables, sd, configs={"se": cfg.replace(rd_channels=8)})


def test_the_export_loads_strictly_into_the_pytorch_model() -> None:
    """No ``num_batches_tracked`` in the export: PyTorch's ``load_state_dict(strict=True)`` keeps its own count."""
    from examples.resnet_torch import resnet as torch_resnet

    model, x, reference = _trained_cbam()
    keras_model = _keras_cbam()
    tf_impl.load_torch_state_dict(keras_model, model.state_dict())
    fresh = torch_resnet(18, "cbam", SMALL["num_classes"])
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in tf_impl.to_torch_state_dict(keras_model).items()})
    with torch.no_grad():
        assert np.array_equal(fresh.eval()(torch.from_numpy(x)).numpy(), reference)
