"""PyTorch reference of the ConvNet throughput benchmark (bench-only: bench/requirements.txt).

The same model, loss and optimizer as the project's ConvNet fitness step, written the way a
PyTorch user would: NCHW, `nn.Conv2d`/`nn.BatchNorm2d` (Keras momentum 0.99 → torch 0.01,
eps 1e-3), TF "SAME" padding for the stride-2 convolutions (one extra row/column after, as
`lfe.training.models.common.conv`), swish, global average pool, dropout 0.1, dense head; the loss
is a
genome's graph evaluated with torch ops on softmax probabilities; Adam in the Keras form of
`lfe.training.schedules.scale_by_keras_adam` with the warmup-cosine learning rate, as foreach ops.

    step = make_step(genome, sign, compile=False)   # step(images uint8 NHWC, labels) -> loss
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lfe.core import genome as genome_lib
from lfe.core.genome import N_INPUTS, ROOT, Genome

EPS = 1e-7  # lfe.core.ops.EPS

# The paper's op set (lfe.core.ops) in torch, by name.
_UNARY: dict[str, Callable] = {
    "neg": lambda x: -x,
    "ln": lambda x: torch.log(torch.abs(x) + EPS),
    "exp": torch.exp,
    "log10": lambda x: torch.log10(torch.abs(x) + EPS),
    "sigmoid": torch.sigmoid,
    "dsigmoid": lambda x: torch.sigmoid(x) * (1.0 - torch.sigmoid(x)),
    "softsign": lambda x: x / (1.0 + torch.abs(x)),
    "dsoftsign": lambda x: 1.0 / (1.0 + torch.abs(x)) ** 2,
    "softplus": lambda x: torch.log(torch.abs(1.0 + torch.exp(x)) + EPS),
    "erf": torch.special.erf,
    "erfc": torch.special.erfc,
    "sin": torch.sin,
    "sinh": torch.sinh,
    "arcsinh": torch.asinh,
    "tanh": torch.tanh,
    "dtanh": lambda x: 1.0 - torch.tanh(x) ** 2,
    "arctanh": lambda x: torch.atanh(torch.clamp(x, -1.0 + EPS, 1.0 - EPS)),
    "reciprocal": lambda x: 1.0 / (x + EPS),
    "abs": torch.abs,
    "square": torch.square,
    "bessel_i0": torch.special.i0,
    "sqrt": lambda x: torch.sqrt(torch.abs(x)),
    "bessel_i1": torch.special.i1,
    "relu": lambda x: torch.clamp(x, min=0.0),
    "bessel_i1e": torch.special.i1e,
    "min0": lambda x: torch.clamp(x, max=0.0),
    "bessel_i0e": torch.special.i0e,
}
_BINARY: dict[str, Callable] = {
    "add": torch.add,
    "mul": torch.mul,
    "sub": torch.sub,
    "div": lambda a, b: a / (b + EPS),
    "div_sqrt": lambda a, b: a / torch.sqrt(1.0 + b * b),
    "max": torch.maximum,
    "min": torch.minimum,
}
TORCH_OPS = {**_UNARY, **_BINARY}


def genome_loss(g: Genome, sign: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """`loss(y, yhat) -> [batch]` as `lfe.training.compile.to_loss`: sign × graph summed over
    classes."""
    if g.op_set != "paper":
        raise ValueError(f"the torch reference implements the 'paper' op set, not {g.op_set!r}")
    order = genome_lib.topological_order(g)
    active = set(genome_lib.active_nodes(g))
    plan = [(n, TORCH_OPS[g.opset.ops[g.ops[n - N_INPUTS]].name], g.node_args(n))
            for n in order + [ROOT] if n in active]

    def loss(y, yhat):
        values = {0: y, 1: yhat, 2: torch.ones_like(y), 3: -torch.ones_like(y)}
        for n, fn, args in plan:
            values[n] = fn(*(values[a] for a in args))
        return sign * values[ROOT].sum(-1)

    return loss


class SameConv(nn.Conv2d):
    """`Conv2D(padding="same")` as TF/flax pad it: an odd total pad puts the extra row after."""

    def forward(self, x):
        k, s = self.kernel_size[0], self.stride[0]
        pads = []
        for size in (x.shape[3], x.shape[2]):  # F.pad order: last dim first
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class ConvNet(nn.Module):
    """The paper's ConvNet (`lfe.training.models.convnet`), 13,930 parameters at 10 classes."""

    def __init__(self, num_classes: int = 10, dropout_rate: float = 0.1):
        super().__init__()
        self.conv1 = SameConv(3, 12, 3, padding=0)
        self.bn1 = nn.BatchNorm2d(12, eps=1e-3, momentum=0.01)
        self.conv2 = SameConv(12, 24, 3, stride=2, padding=0)
        self.bn2 = nn.BatchNorm2d(24, eps=1e-3, momentum=0.01)
        self.conv3 = SameConv(24, 48, 3, stride=2, padding=0)
        self.dropout = nn.Dropout(dropout_rate)
        self.head = nn.Linear(48, num_classes)
        for m in self.modules():  # Keras initialisers
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = F.silu(self.bn1(self.conv1(x)))
        x = F.silu(self.bn2(self.conv2(x)))
        x = self.conv3(x).mean(dim=(2, 3))
        return self.head(self.dropout(x))


def warmup_cosine(step: int, peak=1e-3, warmup=800, total=8000) -> float:
    """`lfe.training.schedules.warmup_cosine` on the host."""
    if step < warmup:
        return peak * step / warmup
    t = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
    return 0.5 * peak * (1.0 + math.cos(math.pi * t))


class KerasAdam:
    """m / (sqrt(v) + eps) * lr * sqrt(1 - b2^t) / (1 - b1^t), as foreach ops (torch's fast
    path for its own Adam)."""

    def __init__(self, params, b1=0.9, b2=0.999, eps=1e-7):
        self.params = [p for p in params if p.requires_grad]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.b1, self.b2, self.eps, self.t = b1, b2, eps, 0

    def alpha(self, lr: float) -> torch.Tensor:
        """The step size of the next update (a tensor, so a compiled update never recompiles)."""
        self.t += 1
        return torch.tensor(-lr * math.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t))

    @torch.no_grad()
    def update(self, neg_alpha: torch.Tensor):
        grads = [p.grad for p in self.params]
        torch._foreach_lerp_(self.m, grads, 1 - self.b1)
        torch._foreach_mul_(self.v, self.b2)
        torch._foreach_addcmul_(self.v, grads, grads, value=1 - self.b2)
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_add_(denom, self.eps)
        step = torch._foreach_div(self.m, denom)
        torch._foreach_mul_(step, neg_alpha)
        torch._foreach_add_(self.params, step)


def make_step(g: Genome, sign: int, *, compile: bool = False, num_classes: int = 10,
              seed: int = 0):
    """A training step `step(images, labels) -> loss tensor` on uint8 NHWC images.

    `compile=True` wraps the forward + loss (and so its backward, via AOTAutograd) and the
    optimizer update in `torch.compile`; the first calls compile.
    """
    torch.manual_seed(seed)
    model = ConvNet(num_classes)
    model.train()
    opt = KerasAdam(model.parameters())
    loss_of = genome_loss(g, sign)

    def forward(images, labels):
        x = images.permute(0, 3, 1, 2).float() / 255.0
        probs = torch.softmax(model(x), dim=-1)
        y = F.one_hot(labels, num_classes).float()
        return loss_of(y, probs).mean()

    update = opt.update
    if compile:
        forward = torch.compile(forward)
        update = torch.compile(opt.update)
    count = [0]

    def step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        for p in opt.params:
            p.grad = None
        loss = forward(images, labels)
        loss.backward()
        update(opt.alpha(warmup_cosine(count[0])))
        count[0] += 1
        return loss.detach()

    step.model = model
    return step
