"""Misbehaving PyTorch targets and networks for the bad-input sweep (tests/test_bad_input_sweep.py).

Each does one thing a target should never do; ``verify`` and ``audit`` must turn it into a failed
check with the reason (never an exit 0, a crash of the caller or a hang). Written here for the sweep;
the blocks of tests/third_party_fixtures/torch_wild.py and audit_nets.py cover the rest.
"""

from __future__ import annotations

import ctypes
import sys
import time

import torch
from torch import nn

from tests.third_party_fixtures.audit_nets import Net, Recalibrate


class _SE(nn.Module):
    def __init__(self, channels: int = 8):
        super().__init__()
        self.fc1 = nn.Linear(channels, 2)
        self.fc2 = nn.Linear(2, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3))))))[:, :, None, None]


class SegfaultSE(_SE):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctypes.string_at(0)  # reads address 0: SIGSEGV
        return x


class InterruptSE(_SE):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise KeyboardInterrupt


class NoneSE(_SE):
    def forward(self, x: torch.Tensor) -> None:  # type: ignore[override]
        return None


class NumpySE(_SE):
    def forward(self, x: torch.Tensor):  # type: ignore[no-untyped-def]
        return super().forward(x).detach().numpy()


class IntSE(_SE):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).round().to(torch.int64)


class InfSE(_SE):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * float("inf")


class RaisingCtorSE(_SE):
    def __init__(self, channels: int = 8):
        raise RuntimeError("this constructor always raises")


class ExitCtorSE(_SE):
    def __init__(self, channels: int = 8):
        sys.exit(0)


class SleepCtorSE(_SE):
    def __init__(self, channels: int = 8):
        time.sleep(3600)


def not_a_module() -> int:
    return 5


NOT_CALLABLE = 5


# ----------------------------------------------------------------------------- networks for audit


class SleepySE(Recalibrate):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(3600)
        return x


class SegfaultingSE(Recalibrate):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctypes.string_at(0)
        return x


class ExitingSE(Recalibrate):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sys.exit(0)


def hanging_net() -> Net:
    return Net([(8, SleepySE(8))])


def segfault_net() -> Net:
    return Net([(8, SegfaultingSE(8))])


def exit_net() -> Net:
    return Net([(8, ExitingSE(8))])


def exiting_build() -> Net:
    sys.exit(0)


class RaisingNet(Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the network's forward fails")


def raising_net() -> Net:
    return RaisingNet([(8, Recalibrate(8))])


def builds_an_int() -> int:
    return 5
