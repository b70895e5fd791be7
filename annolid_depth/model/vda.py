"""Video Depth Anything: a DINOv2 ViT encoder and a DPT head with temporal attention.

One network class for the whole family; the encoders differ only in a row of
`config.ENCODERS`. Module names follow the published checkpoints exactly, so their state
dicts load with `strict=True`. Read `VideoDepthAnything.forward` top to bottom for
the whole pass: encoder (`encode`), then head (`decode`).

Tensor shapes: B videos, T frames, N = B*T images, ph x pw patches of 14 pixels,
C channels.
"""
from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .config import PATCH, EncoderConfig, encoder_config

TEMPORAL_LEN = 32  # longest frame sequence the temporal position table covers
HEAD_MICRO_BATCH = 4  # images per chunk in the full-resolution part of the head


def micro_batches(images: int) -> list[slice]:
    """The head's full-resolution part takes `images` images HEAD_MICRO_BATCH at a time."""
    return [slice(c, min(c + HEAD_MICRO_BATCH, images)) for c in range(0, images, HEAD_MICRO_BATCH)]


def in_chunks(fn, x: torch.Tensor, step: int | None):
    """fn over x in chunks of `step` along the first dimension (None: all in one), the results
    (a tensor or a list of tensors) concatenated; one chunk is one call, without a copy."""
    if step is None or step >= len(x):
        return fn(x)
    parts = [fn(x[i : i + step]) for i in range(0, len(x), step)]
    return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else [torch.cat(level) for level in zip(*parts)]


# --------------------------------------------------------------------------- encoder


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, tokens, dim = x.shape
        q, k, v = self.qkv(x).view(n, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(n, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * 4)
        self.ls2 = LayerScale(dim)

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH, stride=PATCH)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2(nn.Module):
    """The ViT backbone; returns normalised patch tokens of the selected blocks."""

    GRID = 37  # the position table covers 37 x 37 patches (518 x 518 pixels)

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        dim = cfg.embed_dim
        self.layers = cfg.layers
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.GRID * self.GRID + 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # used in training only; kept for the checkpoints
        self.patch_embed = PatchEmbed(dim)
        self.blocks = nn.ModuleList(Block(dim, cfg.heads) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def position_table(self, ph: int, pw: int) -> torch.Tensor:
        """Position embedding for a ph x pw grid, resampled as the checkpoints were trained.

        The `+ 0.1` and `scale_factor` (rather than `size`) are part of the trained model:
        dropping them moves the output by a tenth of its range.
        """
        if ph == pw == self.GRID:
            return self.pos_embed
        table = self.pos_embed.float()
        dim = table.shape[-1]
        grid = table[:, 1:].reshape(1, self.GRID, self.GRID, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(
            grid,
            scale_factor=((ph + 0.1) / self.GRID, (pw + 0.1) / self.GRID),
            mode="bicubic",
            antialias=False,
        )
        grid = grid.permute(0, 2, 3, 1).reshape(1, ph * pw, dim)
        return torch.cat([table[:, :1], grid], dim=1).to(self.pos_embed.dtype)

    def forward(self, images: torch.Tensor, position: torch.Tensor | None = None) -> list[torch.Tensor]:
        """`position`: the `position_table` for this size, when computed beforehand (an
        exported graph takes it as an input, since the resampling fixes the size)."""
        n, _, h, w = images.shape
        if position is None:
            position = self.position_table(h // PATCH, w // PATCH)
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(n, -1, -1), x], dim=1)
        x = x + position.to(x.dtype)
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.layers:
                outputs.append(self.norm(x)[:, 1:])  # the class token is not used by the head
        return outputs


# --------------------------------------------------------------------------- temporal attention


def sinusoid_table(channels: int, length: int = TEMPORAL_LEN) -> torch.Tensor:
    position = torch.arange(length).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, channels, 2) * (-math.log(10000.0) / channels))
    table = torch.zeros(1, length, channels)
    table[0, :, 0::2] = torch.sin(position * div_term)
    table[0, :, 1::2] = torch.cos(position * div_term)
    return table


class PositionalEncoding(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("pe", sinusoid_table(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [P, T, C] -> with the positions of its T frames added."""
        return x + self.pe[:, : x.shape[1]].to(x.dtype)

    def table(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        """The first `length` positions [length, C]."""
        return self.pe[0, :length].to(dtype)


class AttentionMemory(Protocol):
    """What streaming temporal attention reads and extends: the earlier frames' keys and
    values, and the windows the current frames attend to. `StreamMemory` below holds them in
    tensors; the exported step graph's `GraphMemory` (engine/graphs.py) takes them as inputs."""

    window: torch.Tensor  # [T, positions]: the slot of each position of each current frame's window

    def store(self, block: nn.Module, keys: torch.Tensor, values: torch.Tensor):
        """Keep the current frames' keys and values [P, heads, T, d]; return the block's keys
        and values of every slot (one tensor, or parts side by side: `held_parts`)."""

    def to_windows(self, scores: torch.Tensor) -> torch.Tensor:
        """Per-slot values [P, heads, T, slots] -> each frame's window [P, heads, T, positions]."""

    def to_slots(self, weights: torch.Tensor, slots: int) -> torch.Tensor:
        """Per-position weights [P, heads, T, positions] -> summed per slot [P, heads, T, slots]."""


class StreamMemory:
    """An `AttentionMemory` in tensors: the streaming state of the temporal attention: each attention block's keys and values of
    earlier frames, held in `slots` frame slots, and the windows the current frames attend to.

    The current frames are T consecutive frames. `window[t, i]` is the slot of the frame at
    temporal position i of frame t's window (a frame may fill several positions early in a
    video); its last position is frame t itself. Each block stores the current frames' keys
    and values in those slots before any of them attends, so a frame can see the ones before
    it in the same call. The engine decides which frame goes where.
    """

    def __init__(self, slots: int):
        self.slots = slots
        self.window: torch.Tensor | None = None  # [T, positions] slot indices
        self.stores: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def store(self, block: nn.Module, keys: torch.Tensor, values: torch.Tensor):
        """Save the current frames' keys and values [P, heads, T, d]; returns the block's
        whole store, (keys, values) [P, heads, slots, d] (zeros where no frame was yet)."""
        if block not in self.stores:
            shape = (keys.shape[0], keys.shape[1], self.slots, keys.shape[3])
            self.stores[block] = (keys.new_zeros(shape), keys.new_zeros(shape))
        stored_keys, stored_values = self.stores[block]
        if keys.dtype != stored_keys.dtype and torch.promote_types(keys.dtype, stored_keys.dtype) == keys.dtype:
            # a group recomputed in FP32 after a reduced-precision overflow: the store widens for good
            stored_keys, stored_values = self.stores[block] = stored_keys.to(keys.dtype), stored_values.to(keys.dtype)
        write_slots(stored_keys, self.window[:, -1], keys)
        write_slots(stored_values, self.window[:, -1], values)
        return stored_keys, stored_values

    def to_windows(self, scores: torch.Tensor) -> torch.Tensor:
        """Per-slot values [P, heads, T, slots] -> each frame's window [P, heads, T, positions]."""
        p, heads, t, _ = scores.shape
        return scores.gather(3, self.window.expand(p, heads, t, self.window.shape[1]))

    def to_slots(self, weights: torch.Tensor, slots: int) -> torch.Tensor:
        """Per-position weights [P, heads, T, positions] -> summed per slot [P, heads, T, slots]."""
        p, heads, t, n = weights.shape
        return weights.new_zeros(p, heads, t, slots).scatter_add_(3, self.window.expand(p, heads, t, n), weights)

    def export(self, model, slots: list[int]) -> dict:
        """What `slots` hold, by block name (by number for a compiled backend's stores),
        copied to the CPU: the state a resumed stream needs."""
        names = {module: name for name, module in model.named_modules()} if isinstance(model, nn.Module) else {}

        def pick(held):
            return held[:, :, torch.tensor(slots, device=held.device)].cpu()

        return {str(names.get(block, block)): tuple(map(pick, held)) if isinstance(held, tuple) else pick(held)
                for block, held in self.stores.items()}

    def restore(self, model, saved: dict, slots: list[int], device: torch.device) -> None:
        """Put back what `export` saved of `slots`, on `device`, keyed by torch's blocks or by a
        compiled backend's store numbers."""
        blocks = dict(model.named_modules()) if isinstance(model, nn.Module) else {}

        def ring(part):
            full = part.new_zeros((part.shape[0], part.shape[1], self.slots, part.shape[3]))
            full[:, :, slots] = part
            return full.to(device)

        self.stores = {blocks[name] if blocks else int(name): tuple(map(ring, held)) if isinstance(held, tuple) else ring(held)
                       for name, held in saved.items()}


def write_slots(store, slots, values) -> None:
    """store[:, :, slots] = values (`slots` a tensor or an array), as one strided copy per run
    of consecutive slots (a group of frames takes consecutive slots, wrapping round the ring
    at most once): faster than assigning through an index array."""
    slots = slots.tolist()
    start = 0
    for end in range(1, len(slots) + 1):
        if end == len(slots) or slots[end] != slots[end - 1] + 1:
            store[:, :, slots[start] : slots[end - 1] + 1] = values[:, :, start:end]
            start = end


def held_parts(held) -> tuple[torch.Tensor, ...]:
    """A memory's keys or values: one tensor over all slots, or parts side by side along the
    slots (an exported step graph keeps earlier and current frames apart, never copying the
    memory to join them)."""
    return held if isinstance(held, tuple) else (held,)


class TemporalAttention(nn.Module):
    """Attention along the frame axis, separately at every pixel."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
        self.pos_encoder = PositionalEncoding(dim)

    def forward(self, x: torch.Tensor, memory: AttentionMemory | None = None):
        """x: [P, T, C] for P pixel sequences. Without memory the T frames attend to each other;
        with it (streaming) each frame attends to its window of the frames held there."""
        if memory is not None:
            return self.attend_windows(x, memory)
        p, t, c = x.shape
        x = self.pos_encoder(x)
        weight = torch.cat([self.to_q.weight, self.to_k.weight, self.to_v.weight])  # one pass over x
        q, k, v = F.linear(x, weight).view(p, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out[0](out.transpose(1, 2).reshape(p, t, c))

    def attend_windows(self, x: torch.Tensor, memory: AttentionMemory) -> torch.Tensor:
        """x: [P, T, C], the current frames. The position table enters the bias-free key and
        value projections linearly, so keys = to_k(frame) + to_k(position): each frame's part
        is projected and stored once, and the positions add small per-position terms to the
        scores and the output. No earlier frame is projected, copied or gathered again: per
        pixel and head, the T frames' queries meet all stored keys in one matrix product,
        and each frame keeps the scores of its own window.
        """
        p, t, c = x.shape
        heads, n = self.heads, memory.window.shape[1]
        d = c // heads
        pe = self.pos_encoder.table(n, x.dtype)  # [n, C]

        def split(y):  # [P, T, C] -> [P, heads, T, d]
            return y.view(p, t, heads, d).transpose(1, 2)

        keys, values = memory.store(self, split(self.to_k(x)), split(self.to_v(x)))  # [P, heads, slots, d]
        keys, values = held_parts(keys), held_parts(values)
        q = split(self.to_q(x + pe[-1]) * d**-0.5)
        scores = [torch.matmul(q, k.transpose(-1, -2)) for k in keys]
        frame_scores = scores[0] if len(scores) == 1 else torch.cat(scores, -1)  # [P, heads, T, slots]
        pos_keys = self.to_k(pe).view(n, heads, d).permute(1, 2, 0)  # [heads, d, n]
        attn = (memory.to_windows(frame_scores) + torch.matmul(q, pos_keys)).softmax(-1)  # [P, heads, T, n]
        per_slot = memory.to_slots(attn, frame_scores.shape[-1])  # softmax may run in fp32
        pos_values = self.to_v(pe).view(n, heads, d).transpose(0, 1)  # [heads, n, d]
        out = torch.matmul(attn, pos_values)  # [P, heads, T, d]
        for weights, part in zip(per_slot.split([v.shape[2] for v in values], -1), values):
            out = out + torch.matmul(weights, part)
        return self.to_out[0](out.transpose(1, 2).reshape(p, t, c))


class GEGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(dim, hidden * 2)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        # index 1 is the (inference-time no-op) dropout slot of the checkpoints' layout
        self.net = nn.Sequential(GEGLU(dim, dim * 4), nn.Identity(), nn.Linear(dim * 4, dim))

    def forward(self, x):
        return self.net(x)


class TemporalBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList(TemporalAttention(dim, heads) for _ in range(2))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2))
        self.ff = FeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x, memory=None):
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = x + attention(norm(x), memory)
        return x + self.ff(self.ff_norm(x))


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, heads: int = 8):
        super().__init__()
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalBlock(channels, heads)])
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, frames: int, memory: AttentionMemory | None = None, pixels_per_call: int | None = None):
        """x: [B*T, C, h, w] -> the change to add to it. Every pixel's frames form one sequence;
        the sequences are independent, so without memory they may run `pixels_per_call` at a time."""
        n, c, h, w = x.shape
        b = n // frames
        y = self.norm(x).permute(0, 2, 3, 1)  # [B*T, h, w, C]
        y = y.reshape(b, frames, h * w, c).transpose(1, 2).reshape(b * h * w, frames, c)
        block = self.transformer_blocks[0]
        step = pixels_per_call if memory is None else None
        y = in_chunks(lambda chunk: self.proj_out(block(self.proj_in(chunk), memory)), y, step)
        y = y.reshape(b, h * w, frames, c).transpose(1, 2)
        return y.reshape(n, h, w, c).permute(0, 3, 1, 2)


class TemporalModule(nn.Module):
    """Mixes information across the T frames of each video, pixel by pixel; residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels)

    def forward(self, x: torch.Tensor, frames: int, memory: AttentionMemory | None = None, pixels_per_call: int | None = None):
        """x: [B*T, C, h, w] -> same shape."""
        return x + self.temporal_transformer(x, frames, memory, pixels_per_call)


# --------------------------------------------------------------------------- DPT head


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x):
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + x


class FusionBlock(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x, skip=None, size=None):
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        resize = {"size": tuple(size)} if size is not None else {"scale_factor": 2}
        x = F.interpolate(x, **resize, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class FullPrecision(nn.Sequential):
    """Layers that run in float32 whatever the precision around them, as the reference runs
    its last convolutions; `hold_weights_in` leaves their weights in float32."""

    def forward(self, x):
        with torch.autocast(device_type=x.device.type, enabled=False):
            return super().forward(x.float()).to(x.dtype)


class Scratch(nn.Module):
    """DPT's fusion path over the four levels (0 finest to 3 coarsest): each level reduced to
    `features` channels, the path refined from the coarsest level down, each step joining the
    next finer level, and the finest path turned into depth."""

    def __init__(self, out_channels, features: int):
        super().__init__()
        for i, ch in enumerate(out_channels, start=1):
            self.add_module(f"layer{i}_rn", nn.Conv2d(ch, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            self.add_module(f"refinenet{i}", FusionBlock(features))
        self.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.output_conv2 = FullPrecision(
            nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 1, 1), nn.ReLU()
        )

    def reduce(self, level: int, x: torch.Tensor) -> torch.Tensor:
        """A level's feature map -> `features` channels."""
        return getattr(self, f"layer{level + 1}_rn")(x)

    def refine(self, level: int, path: torch.Tensor, skip: torch.Tensor | None = None, size=None) -> torch.Tensor:
        """The path at `level`, joined with that level's reduced map `skip` (none at the
        coarsest), resized to `size` (default: twice as large)."""
        return getattr(self, f"refinenet{level + 1}")(path, skip, size)

    def depth(self, path: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The finest path -> depth [N, 1, *size] before the relu."""
        y = F.interpolate(self.output_conv1(path), size, mode="bilinear", align_corners=True)
        return self.output_conv2(y)


class DPTHead(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        oc, features = cfg.out_channels, cfg.features
        self.projects = nn.ModuleList(nn.Conv2d(cfg.embed_dim, ch, 1) for ch in oc)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(oc[0], oc[0], 4, stride=4),
                nn.ConvTranspose2d(oc[1], oc[1], 2, stride=2),
                nn.Identity(),
                nn.Conv2d(oc[3], oc[3], 3, stride=2, padding=1),
            ]
        )
        self.scratch = Scratch(oc, features)
        self.motion_modules = nn.ModuleList(TemporalModule(ch) for ch in (oc[2], oc[3], features, features))

    def forward(
        self, tokens, frames: int, ph: int, pw: int, memory: AttentionMemory | None = None, outputs: int | None = None,
        pixels_per_call: int | None = None,
    ):
        """tokens: 4 x [B*T, ph*pw, C] -> depth [outputs, 1, 14*ph, 14*pw].

        With `memory` (streaming), each of the T current frames attends to its window of
        frames held there. `outputs` (one clip) gives the depth of only its first images: the
        others still lend temporal context, but skip the per-image, full-resolution tail.
        """
        path_3 = self.temporal(tokens[2], tokens[3], frames, ph, pw, memory, pixels_per_call)
        # The rest is per image, up to full resolution: in chunks, for the images asked for.
        outputs = len(path_3) if outputs is None else outputs
        return torch.cat([self.per_image(tokens[0][p], tokens[1][p], path_3[p], ph, pw) for p in micro_batches(outputs)])

    def level(self, i: int, x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
        """Tokens [N, ph*pw, C] -> the feature map of level i."""
        x = x.transpose(1, 2).reshape(x.shape[0], -1, ph, pw)
        return self.resize_layers[i](self.projects[i](x))

    def temporal(
        self, tokens_2, tokens_3, frames: int, ph: int, pw: int, memory: AttentionMemory | None = None, pixels_per_call: int | None = None
    ):
        """The two coarsest levels, where the frames attend to each other -> path_3 [N, F, 2ph, 2pw]."""
        mm, s = self.motion_modules, self.scratch

        def mix(i, x):  # the frames attend to each other at every pixel
            return mm[i](x, frames, memory, pixels_per_call)

        layer_3 = s.reduce(2, mix(0, self.level(2, tokens_2, ph, pw)))
        layer_4 = s.reduce(3, mix(1, self.level(3, tokens_3, ph, pw)))
        path_4 = mix(2, s.refine(3, layer_4, size=layer_3.shape[2:]))
        return mix(3, s.refine(2, path_4, layer_3, size=(2 * ph, 2 * pw)))

    def per_image(self, tokens_0, tokens_1, path_3, ph: int, pw: int) -> torch.Tensor:
        """Images independently, up to full resolution -> depth [n, 1, 14*ph, 14*pw] before the relu."""
        s = self.scratch
        layer_1, layer_2 = s.reduce(0, self.level(0, tokens_0, ph, pw)), s.reduce(1, self.level(1, tokens_1, ph, pw))
        path_2 = s.refine(1, path_3, layer_2, size=layer_1.shape[2:])
        path_1 = s.refine(0, path_2, layer_1)
        return s.depth(path_1, (ph * PATCH, pw * PATCH))


# --------------------------------------------------------------------------- the model


class VideoDepthAnything(nn.Module):
    """Depth for clips of up to 32 frames: relative disparity, or metres with metric weights.

    The metric checkpoints share this architecture; `metric` only tells the engines how to
    treat the output (metric depth is never rescaled between windows).
    """

    def __init__(self, encoder: str = "vits", metric: bool = False):
        super().__init__()
        cfg = encoder_config(encoder)
        self.encoder, self.metric, self.config = encoder, metric, cfg
        self.pretrained = DinoV2(cfg)
        self.head = DPTHead(cfg)

    def forward(self, x: torch.Tensor, images_per_call: int | None = None, pixels_per_call: int | None = None) -> torch.Tensor:
        """x: [B, T, 3, H, W] normalised frames, H and W multiples of 14 -> depth [B, T, H, W].
        The work may be split into calls of fewer images or pixels (see `encode`, `decode`)."""
        check_clip(x)
        b, t, _, h, w = x.shape
        depth = self.decode(self.encode(x.flatten(0, 1), images_per_call), t, h, w, pixels_per_call=pixels_per_call)
        return depth.unflatten(0, (b, t))

    def encode(self, images: torch.Tensor, images_per_call: int | None = None) -> list[torch.Tensor]:
        """Per-image encoder features [N, ph*pw, C] x 4: independent of the other frames, so
        they may run `images_per_call` images at a time (None: all at once)."""
        return in_chunks(self.pretrained, images, images_per_call)

    def hold_weights_in(self, dtype: torch.dtype) -> VideoDepthAnything:
        """Keep linear and convolution weights in `dtype`, cast once rather than by autocast on
        every call: the same numbers under autocast to `dtype`, faster on a CPU. Layers that always run in float32 stay so."""
        full_precision = {layer for module in self.modules() if isinstance(module, FullPrecision) for layer in module.modules()}
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)) and module not in full_precision:
                module.to(dtype)
        return self

    def decode(
        self, tokens, frames: int, h: int, w: int, memory: AttentionMemory | None = None, outputs: int | None = None,
        pixels_per_call: int | None = None,
    ) -> torch.Tensor:
        """Encoder features of T frames (per video) -> relu depth [N or outputs, h, w]. With `memory`
        (streaming), T consecutive frames whose temporal attention reads and extends that
        memory; `outputs` limits the depth to the first frames of one clip (see DPTHead).
        Without memory, the temporal attention may run `pixels_per_call` pixels' frame
        sequences at a time (None: all at once)."""
        head = self.head(tokens, frames, h // PATCH, w // PATCH, memory, outputs, pixels_per_call)
        return finish_depth(head, h, w)


def finish_depth(depth: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The head's output [N, 1, h', w'] -> relu depth [N, h, w]."""
    if depth.shape[-2:] != (h, w):
        depth = F.interpolate(depth, size=(h, w), mode="bilinear", align_corners=True)
    return F.relu(depth).squeeze(1)


def check_clip(x: torch.Tensor) -> None:
    if x.dim() != 5 or x.shape[2] != 3:
        raise ValueError(f"expected frames shaped [batch, time, 3, height, width], got {list(x.shape)}")
    if not 1 <= x.shape[1] <= TEMPORAL_LEN:
        raise ValueError(f"clips hold 1 to {TEMPORAL_LEN} frames, got {x.shape[1]}")
    h, w = x.shape[-2:]
    if h % PATCH or w % PATCH or h < PATCH or w < PATCH:
        raise ValueError(f"height and width must be positive multiples of {PATCH}, got {h} x {w}")
