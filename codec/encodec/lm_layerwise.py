"""The LM's probabilities for codes known in advance (compression), one layer at a time over a chunk of frames, yet
bit-identical to the frame-by-frame evaluation the decoder has to do.

Frame by frame, every product is a matrix-vector product that reads a layer's weights from memory again: the LM is
memory-bound. When all codes are known, each layer can run over a whole chunk of frames while its weights stay in
cache. The bits stay those of the frame-by-frame evaluation because every frame still goes through the same kernels:

- one-row products as ``baddbmm`` over a batch of one-row matrices (MKL runs each like ``F.linear`` on one row);
- keys and values as rows of a product at least ``stable_rows`` high, as the kv cache of ``EntropyLM`` does;
- LayerNorm, GELU and the softmax over the reference's permuted layout, which work row by row;
- attention batched over frames whose windows have the same length;
- positional embeddings computed one frame at a time, as the reference does.

Whether the batched kernels give the bits of the single ones is measured once per process and LM shape
(``layerwise_exact``). Where they do not, ``LayerwiseStream`` falls back to frame-by-frame evaluation.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple, Optional

import torch
import torch.nn.functional as F

from codec.encodec.lm import EntropyLM, KVCache, LMState, StreamingLayer, sin_embedding, stable_heights

_CHUNK_HEIGHT = 256  # most rows per layer-wise step (frames x streams); tallest key/value product
_exact_found: dict[tuple, bool] = {}
_POSITIONS_CACHED = 4096  # positional embeddings kept per (dim, period): 3 MB at dim 200
_position_tables: dict[tuple, list[torch.Tensor]] = {}


def _rows_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``F.linear`` of each row of ``x`` [C, in] on its own (a one-row product each), in one batched call."""
    rows = x.shape[0]
    if rows == 1:
        return F.linear(x, weight, bias)
    return torch.baddbmm(bias.view(1, 1, -1).expand(rows, 1, -1), x.view(rows, 1, -1),
                         weight.t().unsqueeze(0).expand(rows, -1, -1)).view(rows, -1)


def _attention_inputs(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, window: int,
                      num_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries [G * B, dim] (frame by frame, then stream) and, for each, the ``window`` rows of keys and values
    [N, B, dim] ending at its frame (the last G of N), as sdpa's [G * B, num_heads, rows, head_dim] (views, no
    copy)."""
    streams, dim = keys.shape[1], queries.shape[1]
    head_dim = dim // num_heads

    def windows(rows: torch.Tensor) -> torch.Tensor:  # [G, B, num_heads, window, head_dim] -> merge G and B
        unfolded = rows.view(rows.shape[0], streams, num_heads, head_dim).unfold(0, window, 1).permute(0, 1, 2, 4, 3)
        return unfolded.reshape(-1, num_heads, window, head_dim)

    return queries.view(-1, num_heads, 1, head_dim), windows(keys), windows(values)


def layerwise_exact(lm: EntropyLM, num_codebooks: int) -> bool:
    """Whether every batched kernel of the layer-wise evaluation gives the bits of its single-frame counterpart here.

    Probes each product shape with the LM's own weights, LayerNorm, GELU, attention on a full window and the output
    softmax; the answer is kept per LM shape, codebook count and thread count.
    """
    layer = lm.transformer.layers[0]
    dim, hidden = lm.dim, layer.linear1.out_features
    window = lm.past_context + 1
    key = (dim, hidden, lm.card, lm.num_heads, window, num_codebooks, torch.get_num_threads())
    if key not in _exact_found:
        _exact_found[key] = _probe(lm, layer, num_codebooks, window)
    return _exact_found[key]


@torch.no_grad()
def _probe(lm: EntropyLM, layer: StreamingLayer, num_codebooks: int, window: int) -> bool:
    generator = torch.Generator().manual_seed(4321)
    frames = 5

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    attn = layer.self_attn
    products = [(attn.in_proj_weight[:lm.dim], attn.in_proj_bias[:lm.dim]),
                (attn.out_proj.weight, attn.out_proj.bias), (layer.linear1.weight, layer.linear1.bias),
                (layer.linear2.weight, layer.linear2.bias), (lm.linears[0].weight, lm.linears[0].bias)]
    for weight, bias in products:
        x = randn(frames, weight.shape[1])
        single = torch.cat([F.linear(x[i:i + 1].clone(), weight, bias) for i in range(frames)])
        if not torch.equal(_rows_linear(x, weight, bias), single):
            return False
    norm = layer.norm1
    x, hidden = randn(frames, lm.dim), randn(frames, layer.linear1.out_features)
    if not (torch.equal(F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps),
                        torch.cat([norm(x[i:i + 1].clone().view(1, 1, -1)).view(1, -1) for i in range(frames)]))
            and torch.equal(F.gelu(hidden), torch.cat([F.gelu(hidden[i:i + 1].clone()) for i in range(frames)]))):
        return False
    for size in sorted({3, min(20, window), window}):  # attention on a first frame, a growing and a full window
        queries = randn(frames, lm.dim)
        keys, values = randn(frames + size - 1, lm.dim), randn(frames + size - 1, lm.dim)
        inputs = _attention_inputs(queries, keys[:, None], values[:, None], size, lm.num_heads)
        batched = F.scaled_dot_product_attention(*inputs, queries.new_zeros(1, 1, 1, size), 0.0, False)
        for i in range(frames):
            single = layer._attend(queries[i:i + 1].view(1, 1, -1).clone(), keys[i:i + size].view(size, 1, -1).clone(),
                                   values[i:i + size].view(size, 1, -1).clone(), lm.past_context)
            expected = F.linear(batched[i].permute(1, 0, 2).reshape(1, -1), attn.out_proj.weight, attn.out_proj.bias)
            if not torch.equal(single.view(1, -1), expected):
                return False
    logits = randn(frames, num_codebooks, 1, lm.card)
    batched = torch.softmax(logits.permute(0, 3, 1, 2), dim=1)
    return all(torch.equal(torch.softmax(logits[i:i + 1].clone().permute(0, 3, 1, 2), dim=1), batched[i:i + 1])
               for i in range(frames))


class _LayerWeights(NamedTuple):
    """One layer's weights, detached once per stream (attribute lookups cost more than a frame's small products)."""

    query_weight: torch.Tensor  # first third of the attention's in_proj: dim -> queries
    query_bias: torch.Tensor
    kv_weight: torch.Tensor  # the other two thirds: dim -> keys and values side by side
    kv_bias: torch.Tensor
    out_weight: torch.Tensor  # attention output projection
    out_bias: torch.Tensor
    expand_weight: torch.Tensor  # feed-forward linear1: dim -> hidden
    expand_bias: torch.Tensor
    contract_weight: torch.Tensor  # feed-forward linear2: hidden -> dim
    contract_bias: torch.Tensor
    norm1: tuple  # F.layer_norm arguments after attention
    norm2: tuple  # and after the feed-forward block


def _norm_args(norm: torch.nn.LayerNorm) -> tuple:
    return norm.normalized_shape, norm.weight.detach(), norm.bias.detach(), norm.eps


def _layer_weights(layer: StreamingLayer) -> _LayerWeights:
    dim = layer.norm1.normalized_shape[0]
    w_in, b_in = layer.self_attn.in_proj_weight.detach(), layer.self_attn.in_proj_bias.detach()
    return _LayerWeights(w_in[:dim], b_in[:dim], w_in[dim:], b_in[dim:], layer.self_attn.out_proj.weight.detach(),
                  layer.self_attn.out_proj.bias.detach(), layer.linear1.weight.detach(), layer.linear1.bias.detach(),
                  layer.linear2.weight.detach(), layer.linear2.bias.detach(), _norm_args(layer.norm1),
                  _norm_args(layer.norm2))


def _positions(count: int, offset: int, dim: int, max_period: float) -> torch.Tensor:
    """Sinusoidal embeddings [count, dim] of positions offset..offset+count-1, each computed alone like the
    reference's one-frame call (a batched call rounds the last elements of a row differently); cached."""
    table = _position_tables.setdefault((dim, max_period), [])
    while len(table) < min(offset + count, _POSITIONS_CACHED):
        table.append(sin_embedding(torch.full((1, 1, 1), len(table)), dim, max_period).view(1, dim))
    return torch.cat([table[p] if p < len(table) else
                      sin_embedding(torch.full((1, 1, 1), p), dim, max_period).view(1, dim)
                      for p in range(offset, offset + count)])


class LayerwiseStream:
    """``streams`` LM streams (fresh states, frame 0 first, as many independent segments) that advance together by
    any number of frames per call, each with the bits of ``lm`` stepped one frame at a time on that stream alone:
    the encoder feeds chunks of frames of several segments, the decoder single frames of one."""

    def __init__(self, lm: EntropyLM, num_codebooks: int, streams: int = 1) -> None:
        self.lm, self.streams = lm, streams
        self.stable = lm.stable_rows()
        self.layerwise = self.stable is not None and layerwise_exact(lm, num_codebooks)
        self.states: list[Optional[LMState]] = [None] * streams  # one per stream unless layer-wise
        self.state: Optional[LMState] = None  # all streams at once, layer-wise
        if self.layerwise:
            self.heights = stable_heights(self.stable, lm.past_context + 1)
            self.height = max(height for height in self.heights if height <= _CHUNK_HEIGHT)
        self.layers = [_layer_weights(layer) for layer in lm.transformer.layers]
        self.embeddings = [emb.weight.detach() for emb in lm.emb[:num_codebooks]]
        # one output projection per codebook (dim -> card logits); not the attention heads
        self.output_heads = [(linear.weight.detach(), linear.bias.detach()) for linear in lm.linears[:num_codebooks]]
        self.norm_in = _norm_args(lm.transformer.norm_in)

    @property
    def max_frames(self) -> int:
        """The most frames ``advance`` takes at once (about ``_CHUNK_HEIGHT`` rows over all streams)."""
        if not self.layerwise:
            return 1
        return max(1, min(self.height - self.stable + 1, _CHUNK_HEIGHT // self.streams))

    @torch.no_grad()
    def advance(self, previous: torch.Tensor) -> torch.Tensor:
        """Probabilities [C, streams, K, card] of the next C frames, given ``previous`` [streams, K, C]: 1 + the
        codes of the frame before each (0 before frame 0)."""
        count = previous.shape[-1]
        if count > self.max_frames or previous.shape[0] != self.streams:
            raise ValueError(f"advance takes [{self.streams}, K, at most {self.max_frames}] frames, "
                             f"got {list(previous.shape)}")
        if not self.layerwise:
            probas = []
            for b in range(self.streams):
                frame, self.states[b] = self.lm(previous[b:b + 1], self.states[b])
                probas.append(frame[:, :, :, 0].transpose(1, 2))
            return torch.stack(probas, dim=1)
        if self.state is None:
            self.state = self.lm.initial_state(self.streams)
        return self._advance(previous)

    def _advance(self, indices: torch.Tensor) -> torch.Tensor:
        """Frames of ``indices`` [B, K, C] through all layers, rows ordered frame by frame, then stream.

        Keys and values of the new frames come from one product per stream, of a checked height (the frames before
        them, the new ones, zeros), except in a stream's first frames, whose windows are shorter than ``stable``:
        the reference projects each of those windows on its own, and so do we.
        """
        state, stable, lm = self.state, self.stable, self.lm
        streams, count = indices.shape[0], indices.shape[2]
        dim, past_context, num_heads = lm.dim, lm.past_context, lm.num_heads
        rows_in = indices.permute(2, 0, 1).reshape(count * streams, -1)  # [C * B, K]
        x = sum([F.embedding(rows_in[:, k], weight) for k, weight in enumerate(self.embeddings)])
        positions = _positions(count, state.offset, dim, lm.transformer.max_period).to(x.device)
        x = F.layer_norm(x, *self.norm_in) + positions.repeat_interleave(streams, dim=0)
        # window length of each frame: the frames before it (at most past_context) plus itself
        windows = [min(state.length + i, past_context) + 1 for i in range(count)]
        # runs [start, stop) of consecutive frames whose windows have the same length
        groups = [(i, i + windows[i:].count(window)) for i, window in enumerate(windows)
                  if i == 0 or windows[i - 1] != window]
        inputs, caches = [], []
        for weights, layer_inputs, cache in zip(self.layers, state.inputs, state.kv):
            frames = x.view(count, streams, dim)
            rows = torch.cat([layer_inputs, frames.transpose(0, 1)], dim=1)  # [B, before + C, dim] per stream
            known = rows.shape[1]  # rows per stream: the frames kept from before, then the new ones
            height = next(size for size in self.heights if size >= known)
            pad = x.new_zeros(height - known, dim)
            keys_values = torch.stack([F.linear(torch.cat([rows[b], pad]), weights.kv_weight, weights.kv_bias)[:known]
                                       for b in range(streams)], dim=1)  # [before + C, B, 2 dim]
            if cache is None:
                cache = KVCache(keys_values[..., :dim], keys_values[..., dim:], past_context)
            else:
                cache.append(keys_values[-count:, :, :dim], keys_values[-count:, :, dim:], 1)
            keys, values = cache.keys[:cache.end], cache.values[:cache.end]  # [N, B, dim]
            queries = _rows_linear(x, weights.query_weight, weights.query_bias)
            attended = []
            for start, stop in groups:  # frames with equal windows share one attention call, over all streams
                window = windows[start]
                if window < stable:  # a first frame: its whole window projected alone, as the reference does
                    window_keys_values = torch.stack(
                        [F.linear(rows[b, :window].clone(), weights.kv_weight, weights.kv_bias)  # fresh, aligned
                         for b in range(streams)], 1)
                    group_keys, group_values = window_keys_values[..., :dim], window_keys_values[..., dim:]
                else:
                    end = cache.end - count + stop
                    first = end - (stop - start) - window + 1
                    group_keys, group_values = keys[first:end], values[first:end]
                sdpa_inputs = _attention_inputs(queries[start * streams:stop * streams], group_keys, group_values,
                                                window, num_heads)
                out = F.scaled_dot_product_attention(*sdpa_inputs, queries.new_zeros(1, 1, 1, window), 0.0, False)
                attended.append(out.permute(0, 2, 1, 3).reshape((stop - start) * streams, dim))
            after_attention = F.layer_norm(x + _rows_linear(torch.cat(attended), weights.out_weight,
                                                            weights.out_bias), *weights.norm1)
            hidden = F.gelu(_rows_linear(after_attention, weights.expand_weight, weights.expand_bias))
            feed_forward = _rows_linear(hidden, weights.contract_weight, weights.contract_bias)
            inputs.append(rows[:, -(stable - 1):])
            caches.append(cache)
            x = F.layer_norm(after_attention + feed_forward, *weights.norm2)
        logits = torch.stack([_rows_linear(x, weight, bias)[:, None] for weight, bias in self.output_heads], dim=1)
        self.state = LMState(inputs, caches, min(state.length + count, past_context), state.offset + count)
        probas = torch.softmax(logits.permute(0, 3, 1, 2), dim=1)[:, :, :, 0].transpose(1, 2)
        return probas.reshape(count, streams, *probas.shape[1:])


def layerwise_probabilities(lm: EntropyLM, codes: torch.Tensor) -> Iterator[torch.Tensor]:
    """Probabilities [C, B, K, card] of the codes [B, K, T] of B independent segments, for successive chunks of
    frames (frame t given the codes of frames before t), each bit-identical to ``lm`` stepped one frame at a time
    on that segment alone."""
    stream = LayerwiseStream(lm, codes.shape[1], codes.shape[0])
    previous = torch.cat([torch.zeros_like(codes[..., :1]), 1 + codes[..., :-1]], dim=-1)
    for start in range(0, codes.shape[-1], stream.max_frames):
        yield stream.advance(previous[..., start:start + stream.max_frames])
