"""CBAM's spatial attention map over a photograph, drawn with matplotlib.

    python -m examples.attention_map [--out docs/attention_map.png]

The photograph is matplotlib's own sample image (``grace_hopper.jpg``, shipped inside the
matplotlib package: nothing is downloaded). A fixed bank of oriented edge filters turns it into
16 feature channels (what a network's first layers compute), and a PyTorch CBAM with fixed
weights attends over them: its channel MLP is drawn from the spec's initialisation (seed 0),
its spatial 7x7 kernel is a Gaussian on both pooled maps (a positive "where are the features
strong" detector, in place of a trained one). ``cbam.attention_maps(x)`` returns the spatial map
``(N, 1, H, W)``, here in training mode so that the spatial batch norm normalises with this
image's own statistics. The map lights up where the edges are dense (the flag's stars, the
cap's insignia, the collar and tie) and stays low on flat regions (the uniform, the background).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "docs" / "attention_map.png"
SIZE = 128  # the image is resampled to SIZE x SIZE


def load_image() -> np.ndarray:
    """matplotlib's sample photograph as grey levels in [0, 1], (SIZE, SIZE)."""
    import matplotlib.pyplot as plt
    from matplotlib import cbook

    rgb = plt.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).astype(np.float64) / 255.0
    grey = rgb[..., :3] @ np.array([0.299, 0.587, 0.114])
    side = min(grey.shape)
    grey = grey[:side, (grey.shape[1] - side) // 2 :][:, :side]  # a centred square
    idx = np.arange(SIZE) * side // SIZE
    return grey[np.ix_(idx, idx)]


def edge_features(grey: np.ndarray, orientations: int = 8) -> np.ndarray:
    """(1, 2 * orientations, H, W): rectified oriented gradients at two scales."""
    channels = []
    for blur in (0, 2):
        img = grey
        for _ in range(blur):  # a 3x3 box blur, twice: the coarser scale
            p = np.pad(img, 1, mode="edge")
            img = sum(p[i : i + img.shape[0], j : j + img.shape[1]] for i in range(3) for j in range(3)) / 9.0
        gy, gx = np.gradient(img)
        for k in range(orientations):
            theta = 2 * np.pi * k / orientations
            channels.append(np.maximum(np.cos(theta) * gx + np.sin(theta) * gy, 0.0))
    feats = np.stack(channels)
    return (feats / feats.std())[None]


def spatial_map(features: np.ndarray) -> np.ndarray:
    """CBAM's spatial attention map (H, W) over ``features`` (1, C, H, W)."""
    import torch

    import torch_impl
    from reference_numpy import init_params

    cbam = torch_impl.CBAM(features.shape[1], dtype=torch.float64)
    params = init_params(cbam.config, seed=0)
    k = cbam.config.spatial_kernel_size
    r = np.arange(k) - k // 2
    gauss = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    params["spatial.conv.weight"] = np.stack([gauss, gauss])[None] / gauss.sum()  # (1, 2, k, k)
    torch_impl.load_canonical(cbam, params)
    with torch.no_grad():
        maps = cbam.train().attention_maps(torch.from_numpy(features))
    return maps["spatial"][0, 0].numpy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"the PNG to write (default: {OUT})")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grey = load_image()
    features = edge_features(grey)
    s = spatial_map(features)
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.8), layout="constrained")
    axes[0].imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[0].set_title("input (matplotlib's sample image)")
    axes[1].imshow(features[0].max(axis=0), cmap="magma", interpolation="nearest")
    axes[1].set_title(f"max over the {features.shape[1]} feature channels")
    axes[2].imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    overlay = axes[2].imshow(s, cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="nearest")
    axes[2].set_title("CBAM spatial map over the input")
    for ax in axes:
        ax.set_axis_off()
    fig.colorbar(overlay, ax=axes[2], shrink=0.8, label="spatial gate s")
    fig.suptitle("cbam.attention_maps(x)['spatial']  (PyTorch port, CBAM(16), fixed weights)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"spatial map: min {s.min():.3f}, mean {s.mean():.3f}, max {s.max():.3f}; written to {args.out}")


if __name__ == "__main__":
    main()
