"""The PyTorch contenders: I3D features (eager, channels_last_3d, bf16 autocast, torch.compile)
and the stage-1 training step, on rajax.reference.torch_i3d holding the same weights."""

from __future__ import annotations

import contextlib
import copy

import torch

from bench.common import FINE_TUNED_CLASSES
from rajax.reference.architecture import avg_pool_kernel  # (imports JAX, not TF)


def channels_last_copy(model):
    """A copy of ``model`` in the channels_last_3d memory format."""
    return copy.deepcopy(model).to(memory_format=torch.channels_last_3d)


def torch_forward_contenders(model_f32, clips_ncthw: torch.Tensor, on_gpu: bool, dtypes,
                             compile: bool) -> dict:
    """name -> (dtype, callable returning features [B, T', C] as float32 numpy-able tensor)."""
    contenders = {}
    cl_model = channels_last_copy(model_f32)
    cl_clips = clips_ncthw.contiguous(memory_format=torch.channels_last_3d)

    def run(model, clips, autocast_dtype=None):
        def call():
            with torch.inference_mode(), (
                torch.autocast(clips.device.type, dtype=autocast_dtype)
                if autocast_dtype is not None
                else contextlib.nullcontext()
            ):
                out = model(clips, output="features")
            if on_gpu:
                torch.cuda.synchronize()
            return out

        return call

    if "float32" in dtypes:
        contenders["torch eager"] = ("float32", run(model_f32, clips_ncthw))
        contenders["torch eager channels_last_3d"] = ("float32", run(cl_model, cl_clips))
    if "bfloat16" in dtypes:
        contenders["torch eager channels_last_3d bf16-autocast"] = (
            "bfloat16",
            run(cl_model, cl_clips, torch.bfloat16),
        )
    if compile:
        compiled = torch.compile(cl_model)
        if "float32" in dtypes:
            contenders["torch.compile channels_last_3d"] = ("float32", run(compiled, cl_clips))
        if "bfloat16" in dtypes:
            contenders["torch.compile channels_last_3d bf16-autocast"] = (
                "bfloat16",
                run(compiled, cl_clips, torch.bfloat16),
            )
    return contenders


class TorchStage1:
    """The same stage-1 step in PyTorch: frozen trunk in eval mode under no_grad, trainable
    blocks in train mode (BatchNorm batch statistics), new 10-way classifier, Adam."""

    def __init__(self, model, device: str, autocast_dtype=None, channels_last=False, compile=False):
        from rajax.reference.torch_i3d import InceptionI3d as TorchI3d

        self.model: TorchI3d = copy.deepcopy(model).to(device)
        self.model.replace_logits(FINE_TUNED_CLASSES)
        self.model.to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last_3d)
        self.trainable = [self.model.Mixed_4f, self.model.Mixed_5b, self.model.Mixed_5c, self.model.logits]
        for p in self.model.parameters():
            p.requires_grad_(False)
        for module in self.trainable:
            for p in module.parameters():
                p.requires_grad_(True)
        # configs/base.py's stage 1: Adam 1e-4 with L2 weight decay 1e-5, dropout 0.5 before Logits.
        self.optimizer = torch.optim.Adam([p for m in self.trainable for p in m.parameters()], lr=1e-4,
                                          weight_decay=1e-5)
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.channels_last = channels_last
        # torch.compile: the loss (forward, and through AOTAutograd its backward); Adam stays eager.
        self.loss = torch.compile(self._loss) if compile else self._loss

    def _loss(self, frames, labels):
        m = self.model
        autocast = (
            torch.autocast(self.device, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None else contextlib.nullcontext()
        )
        with autocast:
            with torch.no_grad():
                clips = frames.float() / 127.5 - 1.0
                if self.channels_last:
                    clips = clips.contiguous(memory_format=torch.channels_last_3d)
                x = m.trunk(clips, until="Mixed_4e")
            x = m.Mixed_4f(x)
            x = m.MaxPool3d_5a_2x2(x)
            x = m.Mixed_5b(x)
            x = m.Mixed_5c(x)
            x = torch.nn.functional.avg_pool3d(x, avg_pool_kernel(*x.shape[2:]), stride=1)
            x = torch.nn.functional.dropout(x, 0.5, training=True)
            logits = m.logits(x).mean(dim=(2, 3, 4))
            return torch.nn.functional.cross_entropy(logits.float(), labels)

    def step(self, frames, labels):
        """``frames``: uint8 [b, 3, t, h, w], like rajax's step takes them."""
        self.model.eval()
        for module in self.trainable:
            module.train()
        loss = self.loss(frames, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.device == "cuda":
            torch.cuda.synchronize()
        return loss
