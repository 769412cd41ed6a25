"""Small models, data and dense ground truth shared by the tests."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, hessian, jacrev

from pipeline.curvature import FlatView
from pipeline.linalg import DenseOperator


def small_mlp(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)
    ).to(dtype)


def small_cnn(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    """Conv + BatchNorm (eval mode, non-trivial running stats) + linear head."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 3)
    ).to(dtype)
    bn = model[1]
    bn.running_mean.copy_(torch.randn(3, dtype=dtype) * 0.1)
    bn.running_var.copy_(torch.rand(3, dtype=dtype) + 0.5)
    return model.eval()


def classification_data(
    n: int, in_shape: tuple[int, ...], classes: int = 3, seed: int = 1, dtype=torch.float64
):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, *in_shape, generator=gen, dtype=dtype), torch.randint(
        0, classes, (n,), generator=gen
    )


def split(
    x: torch.Tensor, y: torch.Tensor, sizes: list[int]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(zip(torch.split(x, sizes), torch.split(y, sizes)))


def full_loss_fn(model: nn.Module, loss_fn, x, y, names=None):
    """Mean loss over all samples as a function of the flat selected parameters, and theta."""
    params = {n: p.detach() for n, p in model.named_parameters() if names is None or n in names}
    view = FlatView.of(params)
    others = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    buffers = dict(model.named_buffers())

    def f(theta):
        return loss_fn(
            functional_call(model, {**others, **buffers, **view.unflatten(theta)}, (x,)), y
        )

    return f, view.flatten(params), view


def dense_hessian(model, loss_fn, x, y, names=None) -> torch.Tensor:
    f, theta, _ = full_loss_fn(model, loss_fn, x, y, names)
    return hessian(f)(theta)


def dense_ggn(model, loss_fn, x, y) -> torch.Tensor:
    """J^T H_out J with the full Jacobian and output Hessian of the mean loss."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    view = FlatView.of(params)
    theta = view.flatten(params)

    def outputs(t):
        return functional_call(model, {**dict(model.named_buffers()), **view.unflatten(t)}, (x,))

    out = outputs(theta)
    J = jacrev(outputs)(theta).reshape(out.numel(), -1)
    H_out = hessian(lambda o: loss_fn(o, y))(out).reshape(out.numel(), out.numel())
    return J.T @ H_out @ J


def dense_fisher(model, loss_fn, x, y) -> torch.Tensor:
    """(1/N) sum_n g_n g_n^T from per-sample gradients (sum_n g_n g_n^T for a sum-reduced loss)."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    view = FlatView.of(params)
    theta = view.flatten(params)

    def sample_loss(t, xi, yi):
        return loss_fn(
            functional_call(
                model, {**dict(model.named_buffers()), **view.unflatten(t)}, (xi[None],)
            ),
            yi[None],
        )

    G = torch.stack([jacrev(sample_loss)(theta, x[i], y[i]) for i in range(x.shape[0])])
    return G.T @ G / (1 if getattr(loss_fn, "reduction", "mean") == "sum" else x.shape[0])


def mlp_factory(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    """Picklable model factory for Ray workers (a slightly wider MLP)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3)
    ).to(dtype)


def data_factory(n: int = 61, dtype: torch.dtype = torch.float64):
    return classification_data(n, (6,), dtype=dtype)


def failing_factory():
    raise RuntimeError("checkpoint file /nonexistent/model.pt not found")


class SlowDataset(torch.utils.data.Dataset):
    """A map-style data set that sleeps per sample (to kill a worker in the middle of a product)."""

    def __init__(self, n: int = 40, delay_s: float = 0.02):
        self.x, self.y = classification_data(n, (6,))
        self.delay_s = delay_s

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, i):
        import time

        time.sleep(self.delay_s)
        return self.x[i], self.y[i]


class TripwireMLP(nn.Module):
    """``mlp_factory``'s network whose forward, on a batch of exactly ``batch`` samples (one rank's
    last batch: the shards differ in size), obeys the flag file ``flag`` while it exists. ``hang``:
    sleep for ever if the file says ``once`` (claiming it: renamed away, so a replacement worker
    runs normally), else sleep while the file exists. ``kill``: count the number in the file down
    by one and SIGKILL the own process (as the kernel's OOM killer does) once it is 0, for good."""

    def __init__(self, flag: str, batch: int, action: str):
        super().__init__()
        self.net, self.flag, self.batch, self.action = mlp_factory(), flag, batch, action

    def forward(self, x):
        if x.shape[0] == self.batch:
            self._trip()
        return self.net(x)

    def _trip(self) -> None:
        import os
        import pathlib
        import signal
        import time

        flag = pathlib.Path(self.flag)
        try:
            said = flag.read_text().strip()
        except FileNotFoundError:
            return
        if self.action == "kill":
            flag.write_text(str(max(int(said) - 1, 0)))
            if int(said) <= 0:
                os.kill(os.getpid(), signal.SIGKILL)
        elif said == "once":
            flag.rename(flag.with_suffix(".claimed"))
            while True:
                time.sleep(0.05)
        else:
            while flag.exists():
                time.sleep(0.05)


def tripwire_factory(flag: str, batch: int, action: str) -> nn.Module:
    return TripwireMLP(flag, batch, action)


def nan_data_factory(n: int = 20):
    x, y = classification_data(n, (6,))
    x[n - 1, 0] = float("nan")
    return x, y


def synthetic(dim=400, seed=0, spectrum=None) -> DenseOperator:
    """Q diag(spectrum) Q^T with Q seeded random orthogonal.

    Q diag(spectrum) Q^T, Q seeded random orthogonal (default: 8 separated eigenvalues of both signs
    over a 0.5-scale bulk).
    """
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    if spectrum is None:
        spectrum = torch.cat(
            [
                torch.tensor([50.0, -40.0, 30.0, 20.0, -15.0, 12.0, 10.0, 9.0]),
                0.5 * torch.randn(dim - 8, generator=gen),
            ]
        )
    return DenseOperator(Q @ torch.diag(spectrum.double()) @ Q.T)


def unseeded_mlp_factory() -> nn.Module:
    """A model factory whose weights differ per process (seeded by the pid): not deterministic."""
    import os

    torch.manual_seed(os.getpid())
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def wait_for_marks(done_path, count: int, timeout_s: float = 120.0) -> None:
    """Wait until ``count`` completion marks of a fresh store's measurement array (a Zarr array
    at ``done_path``) are written: each set mark is one chunk file ``c/<block>`` (temporary files
    of a write in progress are not counted). Counting files is cheap, so a loaded machine does not
    let the measured process run past the point of interest."""
    import time

    def marks() -> int:
        return (
            sum(1 for p in (done_path / "c").iterdir() if p.name.isdigit())
            if (done_path / "c").is_dir()
            else 0
        )

    deadline = time.time() + timeout_s
    while time.time() < deadline and marks() < count:
        time.sleep(0.005)


def gpt_factory(seed: int = 0) -> nn.Module:
    """A 1-layer TinyGPT: vocabulary 11, context 6, width 4, 2 heads (D = 375)."""
    from pipeline.models.gpt import TinyGPT

    torch.manual_seed(seed)
    return TinyGPT(vocab_size=11, context=6, layers=1, width=4, heads=2)


def ragged_token_batch(lengths=(6, 3, 5, 2, 4, 6, 1), seed: int = 3):
    """Right-padded sequences of the given lengths: ({input_ids, attention_mask}, targets).

    Targets are the next tokens, IGNORE (-100) past each sequence's end, so sequences of length
    L carry L - 1 real targets (and one of length 1 none).
    """
    from pipeline.models.losses import IGNORE

    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(0, 11, (len(lengths), width + 1), generator=gen)
    mask = torch.zeros(len(lengths), width, dtype=torch.int64)
    targets = ids[:, 1:].clone()
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
        targets[row, max(length - 1, 0) :] = IGNORE
        ids[row, length:] = 0
    return {"input_ids": ids[:, :width], "attention_mask": mask}, targets


class RaggedTokens(torch.utils.data.Dataset):
    """``ragged_token_batch`` as a map-style data set of (inputs dict, targets) samples."""

    def __init__(self):
        self.inputs, self.targets = ragged_token_batch()

    def __len__(self):
        return self.targets.shape[0]

    def __getitem__(self, i):
        return {key: value[i] for key, value in self.inputs.items()}, self.targets[i]
