# modeling_wgpt.py: wgpt's whole model family in one plain PyTorch file, nanoGPT-style, written by
# wgpt beside the weights of any model that is not exactly GPT2LMHeadModel, LlamaForCausalLM or
# Qwen3ForCausalLM, so that
#   AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)
# loads it. At GPT-2's, Llama's and Qwen3's settings it gives those classes' logits
# (tests/fixtures/check_modeling_wgpt.py checks it).
#
# The switches (configuration_wgpt.py): positions learned | rope | none, norm layernorm | rmsnorm,
# mlp gelu | relu2 | swiglu, n_kv_head (grouped-query attention), head_dim, qk_norm, bias,
# tied, logit_softcap.
#
# The state dict is nanoGPT's (model.safetensors holds exactly these names; a bias only with
# `bias`, LayerNorm's too; linear weights as nn.Linear stores them, [out, in]):
#   transformer.wte.weight                     (V, C)
#   transformer.wpe.weight                     (T, C)                       learned positions only
#   transformer.h.N.ln_1.weight, .bias         (C,), (C,)
#   transformer.h.N.attn.c_attn.weight, .bias  ((NH + 2KV) hs, C), ((NH + 2KV) hs,)   q | k | v rows
#   transformer.h.N.attn.q_norm.weight         (hs,)                        qk_norm only
#   transformer.h.N.attn.k_norm.weight         (hs,)                        qk_norm only
#   transformer.h.N.attn.c_proj.weight, .bias  (C, NH hs), (C,)
#   transformer.h.N.ln_2.weight, .bias         (C,), (C,)
#   transformer.h.N.mlp.c_fc.weight, .bias     (I, C), (I,)                 swiglu: 2I, gate rows then up rows
#   transformer.h.N.mlp.c_proj.weight, .bias   (C, I), (C,)
#   transformer.ln_f.weight, .bias             (C,), (C,)
#   lm_head.weight                             (V, C)                       untied only
# Llama's q_proj, k_proj, v_proj are the row blocks of c_attn; gate_proj and up_proj those of
# c_fc; o_proj is attn.c_proj and down_proj mlp.c_proj. GPT-2's Conv1D weights are these
# transposed.

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from .configuration_wgpt import WgptConfig


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, in float32 (Llama's and Qwen3's)."""

    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def make_norm(config):
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd, config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


def rope_cos_sin(config, T, device):
    """HF's default rotary table for positions 0..T-1: (T, hs) each, the frequencies repeated
    over both halves (rotate-half layout)."""
    hs = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, hs, 2, dtype=torch.float, device=device) / hs))
    freqs = torch.arange(T, dtype=torch.float, device=device)[:, None] * inv_freq[None, :]  # (T, hs/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, hs)
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head, self.n_kv_head, self.hs = config.n_head, config.n_kv_head, config.head_dim
        qkv = (self.n_head + 2 * self.n_kv_head) * self.hs
        self.c_attn = nn.Linear(config.n_embd, qkv, bias=config.bias)
        if config.qk_norm:
            self.q_norm = RMSNorm(self.hs, config.norm_eps)
            self.k_norm = RMSNorm(self.hs, config.norm_eps)
        self.c_proj = nn.Linear(self.n_head * self.hs, config.n_embd, bias=config.bias)
        self.qk_norm, self.rope = config.qk_norm, config.positions == "rope"

    def forward(self, x, cos_sin):
        B, T, _ = x.size()
        nh, kv, hs = self.n_head, self.n_kv_head, self.hs
        q, k, v = self.c_attn(x).split([nh * hs, kv * hs, kv * hs], dim=2)
        q = q.view(B, T, nh, hs)  # (B, T, nh, hs)
        k = k.view(B, T, kv, hs)  # (B, T, kv, hs)
        v = v.view(B, T, kv, hs).transpose(1, 2)  # (B, kv, T, hs)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, nh, T, hs), (B, kv, T, hs)
        if self.rope:
            cos, sin = cos_sin  # (T, hs)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
        # grouped-query attention: query head h reads key/value head h // (nh / kv)
        k = k.repeat_interleave(nh // kv, dim=1)  # (B, nh, T, hs)
        v = v.repeat_interleave(nh // kv, dim=1)  # (B, nh, T, hs)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~mask, float("-inf"))
        att = F.softmax(att.float(), dim=-1).to(q.dtype)
        y = att @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, nh * hs)  # (B, T, nh hs)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.kind, i = config.mlp, config.intermediate_size
        width = 2 * i if config.mlp == "swiglu" else i
        self.c_fc = nn.Linear(config.n_embd, width, bias=config.bias)
        self.c_proj = nn.Linear(i, config.n_embd, bias=config.bias)

    def forward(self, x):
        h = self.c_fc(x)  # (B, T, I), swiglu (B, T, 2I)
        if self.kind == "gelu":
            h = F.gelu(h, approximate="tanh")
        elif self.kind == "relu2":
            h = F.relu(h).square()
        else:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        return self.c_proj(h)


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x, cos_sin):
        x = x + self.attn(self.ln_1(x), cos_sin)
        x = x + self.mlp(self.ln_2(x))
        return x


class WgptModel(nn.Module):
    """The embeddings, the blocks and the final norm: hidden states (B, T, C) from ids (B, T)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        if config.positions == "learned":
            self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = make_norm(config)

    def forward(self, idx):
        B, T = idx.size()
        if T > self.config.n_positions:
            raise ValueError(f"{T} tokens are more than the model's context of {self.config.n_positions}")
        x = self.wte(idx)  # (B, T, C)
        if self.config.positions == "learned":
            x = x + self.wpe(torch.arange(T, device=idx.device))
        cos_sin = rope_cos_sin(self.config, T, idx.device) if self.config.positions == "rope" else None
        for block in self.h:
            x = block(x, cos_sin)
        return self.ln_f(x)


class WgptPreTrainedModel(PreTrainedModel):
    config_class = WgptConfig
    base_model_prefix = "transformer"
    _no_split_modules = ["Block"]


class WgptForCausalLM(WgptPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.transformer = WgptModel(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.transformer.wte

    def set_input_embeddings(self, value):
        self.transformer.wte = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("WgptForCausalLM runs unpadded sequences only (attention_mask all ones)")
        x = self.transformer(input_ids)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, V)
        cap = self.config.logit_softcap
        if cap is not None:
            logits = cap * torch.tanh(logits / cap)
        loss = None
        if labels is not None:
            # the token at t predicts the one at t + 1, as transformers' causal LM loss
            V = logits.size(-1)
            shifted = logits[:, :-1, :].float().reshape(-1, V)
            loss = F.cross_entropy(shifted, labels[:, 1:].reshape(-1).to(logits.device), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        # no KV cache: every step runs the whole sequence so far
        return {"input_ids": input_ids, "attention_mask": attention_mask}
